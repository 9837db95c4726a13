"""Technology-specific building blocks, chosen at elaboration time.

Every engine is written once. Where an FPGA needs a primitive that Yosys does
not infer, the component asks the *elaboration target* (Amaranth's
``platform`` argument) and builds either the generic, simulation-exact logic
(``platform=None``: simulators, lint, ``make verilog``) or the primitive
(``ECP5``: the FPGA flow, ``make synth``; or an Amaranth ECP5 platform such as
amaranth-boards' ULX3S, see :func:`is_ecp5` and examples/ulx3s_sptc.py). Both
have the same cycle behaviour;
``tests/test_sptc_rtl.py::test_sptc_ecp5_flavour`` simulates the ECP5 flavour of
the SpTC (against behavioural models of the primitives, sim/models/ecp5_prims.v)
bit- and cycle-exact against the golden model, as the generic one is.

Three things Yosys 0.70's ECP5 flow does not do on its own:

* **DSP registers.** ``synth_ecp5`` maps ``$mul`` to a combinational
  MULT18X18D and leaves the pipeline flip-flops in the fabric, so every multiply
  pays fabric -> DSP -> fabric routing inside one cycle. :class:`RegMul`
  instantiates MULT18X18D with its input and/or output registers enabled.
* **Register replication.** ``opt_merge`` merges flip-flops with the same
  inputs, so copies of a job constant written in plain Amaranth collapse back
  into one high-fanout register. :func:`replicas` instantiates ``TRELLIS_FF``
  cells marked ``keep`` on ECP5, which Yosys leaves alone; nextpnr then places
  each copy next to its loads.
* **Block RAM output registers.** A read port becomes a DP16KD without its
  output register (5.8 ns clock-to-out); :class:`RegReadRAM` instantiates it
  with REGMODE "OUTREG".
"""
from __future__ import annotations

from amaranth import ClockSignal, Const, Instance, Module, ResetSignal, Signal, signed, unsigned
from amaranth.hdl import Shape
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


class Target:
    """An elaboration target handed to ``elaborate(platform)``. It has no Amaranth
    platform methods (no ``get_memory``...): memories and FIFOs stay generic.

    This is how the project's own tools (``python -m synth verilog --target ecp5``,
    the FPGA flow) ask for the ECP5 flavour. Inside a user's Amaranth build the
    platform itself is the target: :func:`is_ecp5` also recognises Amaranth's
    Lattice ECP5 platforms (see there), and Amaranth's own lowering then applies
    to everything else (in Amaranth 0.5 a ``LatticePlatform`` lowers ``Memory``
    and the FIFOs exactly as ``platform=None`` does; only I/O buffers differ)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self):
        return f"Target({self.name!r})"


ECP5 = Target("ecp5")
TARGETS = {"generic": None, "ecp5": ECP5}

# MULT18X18D blocks of the LFE5U-85F, the FPGA the flow targets (synth/nextpnr.py).
ECP5_85K_MULT18 = 156


def is_ecp5(platform) -> bool:
    """Whether ``elaborate(platform)`` builds the ECP5 flavour (the primitives below).

    True for this project's :data:`ECP5` target, and for an Amaranth Lattice
    platform (``amaranth.vendor.LatticePlatform``, the base of every
    amaranth-boards ECP5 board such as ``ULX3S_85F_Platform``) whose ``family``
    is ``"ecp5"`` (devices ``LFE5U``/``LFE5UM``/``LFE5UM5G``/``LAE5U``) and whose
    ``toolchain`` is ``"Trellis"`` (Yosys + nextpnr-ecp5, Amaranth's default for
    the ECP5): the flow these primitives are written and measured for
    (``TRELLIS_FF`` is a Yosys cell). With ``toolchain="Diamond"``, other Lattice
    families (MachXO2/3, Nexus) and every other platform: False, the generic
    logic, which any synthesis tool maps on its own.
    """
    if platform is None:
        return False
    if isinstance(platform, Target):
        return platform.name == "ecp5"
    return _is_lattice_ecp5(platform)


def _is_lattice_ecp5(platform) -> bool:
    # Imported here: a simulation (platform=None) never loads amaranth.build.
    from amaranth.vendor import LatticePlatform
    return (isinstance(platform, LatticePlatform)
            and getattr(platform, "family", None) == "ecp5"
            and getattr(platform, "toolchain", None) == "Trellis")


def target_for(name: str | None):
    """The elaboration target for a flow target name (``ecp5``; anything else: generic)."""
    return TARGETS.get(name or "generic")


# --------------------------------------------------------------------------- DSP

_DSP_W = 18  # MULT18X18D operand width


class RegMul(wiring.Component):
    """``p = a * b`` with the DSP block's own registers.

    ``in_reg``: ``a`` and ``b`` are registered inside the DSP (1 cycle);
    ``out_reg``: the product is registered inside the DSP (1 cycle). Latency is
    ``in_reg + out_reg`` cycles. ``enable``: an ``en`` port gates every register
    (the DSP's CE); without it the registers load every cycle.
    Operands up to 18 bits each (signed or unsigned; both must have the same
    signedness, as a MULT18X18D's A and B may differ but our users never mix them).
    """

    def __init__(self, a_shape, b_shape, *, in_reg: bool = True, out_reg: bool = True,
                 enable: bool = False):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        if a_shape.width > _DSP_W or b_shape.width > _DSP_W:
            raise ValueError(f"RegMul: operands of {a_shape.width} and {b_shape.width} bits; "
                             f"a MULT18X18D takes at most {_DSP_W}")
        if a_shape.signed != b_shape.signed:
            raise ValueError("RegMul: a and b must have the same signedness")
        if not (in_reg or out_reg):
            raise ValueError("RegMul: use a plain multiply when no register is wanted")
        self.in_reg, self.out_reg = in_reg, out_reg
        pw = a_shape.width + b_shape.width
        p_shape = signed(pw) if a_shape.signed else unsigned(pw)
        ports = {"a": In(a_shape), "b": In(b_shape), "p": Out(p_shape)}
        if enable:
            ports["en"] = In(1, init=1)
        self.enable = enable
        super().__init__(ports)

    @property
    def latency(self) -> int:
        return int(self.in_reg) + int(self.out_reg)

    def elaborate(self, platform):
        m = Module()
        if is_ecp5(platform):
            self._ecp5(m)
            return m
        a, b = self.a, self.b
        sync = []
        if self.in_reg:
            a, b = Signal.like(self.a, name="a_q"), Signal.like(self.b, name="b_q")
            sync += [a.eq(self.a), b.eq(self.b)]
        if self.out_reg:
            sync.append(self.p.eq(a * b))
        else:
            m.d.comb += self.p.eq(a * b)
        if self.enable:
            with m.If(self.en):
                m.d.sync += sync
        else:
            m.d.sync += sync
        return m

    def _ecp5(self, m):
        signed_ = self.a.shape().signed
        ext = (lambda v: v.as_signed() if signed_ else v.as_unsigned())
        a18 = Signal(signed(_DSP_W) if signed_ else unsigned(_DSP_W))
        b18 = Signal.like(a18)
        p36 = Signal(36)
        m.d.comb += [a18.eq(ext(self.a)), b18.eq(ext(self.b)),
                     self.p.eq(p36[:len(self.p)])]
        clk = "CLK0"
        ports = {f"i_A{i}": a18[i] for i in range(_DSP_W)}
        ports.update({f"i_B{i}": b18[i] for i in range(_DSP_W)})
        ports.update({f"o_P{i}": p36[i] for i in range(36)})
        # SOURCEB_MODE "B_SHIFT" (the primitive's default, as Yosys' own ECP5 DSP
        # mapping leaves it) with SOURCEB = 0: B comes from the B input. Every
        # string setting must be one Project Trellis knows: nextpnr copies it into
        # the bitstream config unchecked and ecppack aborts on an unknown one
        # (tests/test_examples.py checks them against its database).
        m.submodules.dsp = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK=clk if self.in_reg else "NONE",
            p_REG_INPUTB_CLK=clk if self.in_reg else "NONE",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK=clk if self.out_reg else "NONE",
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
            p_MULT_BYPASS="DISABLED",
            i_SIGNEDA=Const(int(signed_), 1), i_SIGNEDB=Const(int(signed_), 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal(), i_CE0=self.en if self.enable else Const(1, 1),
            i_RST0=Const(0, 1),
            **ports)


# -------------------------------------------------------------------- replication

def replicas(m: Module, platform, value, n: int, name: str, init: int = 0,
             reset_less: bool = False) -> list[Signal]:
    """``n`` registers loading ``value`` every cycle (reset and power-up value
    ``init``, with the sync domain's reset; ``reset_less``: power-up value only,
    for data whose consumers are qualified by a valid bit, so the reset net does
    not have to reach them).

    Two uses: copies of a job constant (one cycle behind it), and copies of a
    state register, given that register's *next-state* value and init, which
    then equal the register in every cycle. Give each group of loads its own
    copy. Generic: plain registers (Yosys merges them, which is fine where
    timing does not matter); ECP5: ``keep`` TRELLIS_FF cells."""
    width = len(value)
    out = []
    for k in range(n):
        q = Signal(width, name=f"{name}_r{k}", init=init, reset_less=reset_less)
        if is_ecp5(platform):
            for i in range(width):
                m.submodules[f"{name}_r{k}_ff{i}"] = Instance(
                    "TRELLIS_FF", a_keep=1,
                    p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK", p_LSRMUX="LSR",
                    p_REGSET="SET" if (init >> i) & 1 else "RESET", p_SRMODE="LSR_OVER_CE",
                    i_CLK=ClockSignal(), i_LSR=Const(0, 1) if reset_less else ResetSignal(),
                    i_CE=Const(1, 1),
                    i_DI=value[i], o_Q=q[i])
        else:
            m.d.sync += q.eq(value)
        out.append(q)
    return out


# ------------------------------------------------------------------- block RAM

# DP16KD configurations of one port: (depth, data width); an address of a
# narrower-than-18 word still uses ADx13 down, the low bits select within 18.
_DP16KD_SHAPES = ((1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


class RegReadRAM(wiring.Component):
    """A one-write, one-read RAM whose read data is registered twice: ``rd_data``
    is ``mem[rd_addr]`` two cycles after ``rd_addr`` (a synchronous read, then an
    output register). A write and a read of the same address in one cycle are
    not supported (the read's result is undefined on the FPGA).

    Why: Yosys maps a read port into a DP16KD without its output register
    (REGMODE "NOREG"), whose clock-to-out is 5.8 ns at speed grade 6, most of a
    150 MHz cycle, and a fabric register behind it cannot take that back. ECP5:
    one DP16KD per bit slice (``width`` split by what one block holds at
    ``depth``: 1024 x 18 ... 16384 x 1) with REGMODE_B "OUTREG" (0.96 ns).
    Generic: ``lib.memory.Memory`` and a register, the same cycle behaviour.
    """

    def __init__(self, width: int, depth: int):
        if width < 1:
            raise ValueError(f"RegReadRAM: width {width} must be at least 1")
        if depth < 1:
            raise ValueError(f"RegReadRAM: depth {depth} must be at least 1")
        self.width, self.depth = width, depth
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "wr_addr": In(abits), "wr_data": In(width), "wr_en": In(1),
            "rd_addr": In(abits), "rd_data": Out(width),
        })

    @property
    def slice_width(self) -> int:
        """Data bits per DP16KD at this depth (ECP5 flavour)."""
        for d, w in _DP16KD_SHAPES:
            if self.depth <= d:
                return w
        raise ValueError(f"RegReadRAM: depth {self.depth} exceeds {_DP16KD_SHAPES[-1][0]}, the "
                         f"deepest DP16KD bit slice (the ECP5 flavour does not cascade blocks)")

    def elaborate(self, platform):
        m = Module()
        if is_ecp5(platform):
            sw = self.slice_width
            low = {18: 4, 9: 3, 4: 2, 2: 1, 1: 0}[sw]   # address bits below the word
            for k, j in enumerate(range(0, self.width, sw)):
                n = min(sw, self.width - j)
                ports = {}
                for i in range(14):
                    a = i - low
                    wa = self.wr_addr[a] if 0 <= a < len(self.wr_addr) else Const(0, 1)
                    ra = self.rd_addr[a] if 0 <= a < len(self.rd_addr) else Const(0, 1)
                    if sw == 18 and i < 2:      # x18: ADA1..0 are the write byte enables
                        wa = Const(1, 1)
                    ports[f"i_ADA{i}"], ports[f"i_ADB{i}"] = wa, ra
                doa = Signal(18, name=f"bram{k}_doa")          # port A only writes
                dob = Signal(18, name=f"bram{k}_dob")
                m.d.comb += self.rd_data[j:j + n].eq(dob[:n])
                for i in range(18):
                    ports[f"i_DIA{i}"] = self.wr_data[j + i] if i < n else Const(0, 1)
                    ports[f"i_DIB{i}"] = Const(0, 1)
                    ports[f"o_DOA{i}"], ports[f"o_DOB{i}"] = doa[i], dob[i]
                for p in ("A", "B"):
                    for i in range(3):
                        ports[f"i_CS{p}{i}"] = Const(0, 1)
                m.submodules[f"bram{k}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=sw, p_DATA_WIDTH_B=sw,
                    p_REGMODE_A="NOREG", p_REGMODE_B="OUTREG",
                    p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                    p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL",
                    p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC", p_GSR="DISABLED",
                    i_CLKA=ClockSignal(), i_CEA=Const(1, 1), i_OCEA=Const(1, 1),
                    i_WEA=self.wr_en, i_RSTA=Const(0, 1),
                    i_CLKB=ClockSignal(), i_CEB=Const(1, 1), i_OCEB=Const(1, 1),
                    i_WEB=Const(0, 1), i_RSTB=Const(0, 1),
                    **ports)
            return m
        mem = m.submodules.mem = Memory(shape=self.width, depth=self.depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()
        q = Signal(self.width, reset_less=True)
        m.d.comb += [wp.addr.eq(self.wr_addr), wp.data.eq(self.wr_data), wp.en.eq(self.wr_en),
                     rp.addr.eq(self.rd_addr), self.rd_data.eq(q)]
        m.d.sync += q.eq(rp.data)
        return m
