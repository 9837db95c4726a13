"""FuseSoC generator: a moe-rtl engine's Verilog for a FuseSoC build.

FuseSoC runs it (``generators: moe_rtl_verilog`` in cores/generators.core) as
``python3 synth/fusesoc_gen.py <input.yml>`` in a fresh working folder. The
input (FuseSoC's generator API, ``gapi`` 1.0) names ``files_root`` (the folder
of the core that asked), ``vlnv`` (the name of the core to write) and
``parameters``:

    engine  (str, required)  sptc, pim, cim or moe
    config  (str)            a configuration of the engine's CONFIGS (default: default)
    target  (str)            generic (portable Verilog; default) or ecp5 (with the ECP5
                             primitives of hdl.fpga, for Yosys' synth_ecp5 only)
    params  (list of str)    overrides of config fields, as ``--param k=v`` of
                             ``python -m synth verilog`` (e.g. ["rows=4"])

It writes, into the working folder, what ``python -m synth verilog`` writes
(``<top>.v``, ``<engine>.f``, ``<engine>.json``), the project's Verilator lint
waivers (``moe_rtl_lint_waivers.vlt``: synth/lint_waivers.vlt, limited to the
generated ``moe_*.v``) and ``<name>.core``, a CAPI2 core named ``vlnv`` whose
default target holds ``<top>.v`` (``verilogSource``) and the waivers (``vlt``:
Verilator reads them, other tools pass them by). A bad input prints one line naming the field and the
value and exits with status 2 (FuseSoC then reports the generator as failed).

The interpreter (``python3`` on PATH) must be one with moe-rtl's dependencies
(Amaranth; PyYAML comes with FuseSoC): run FuseSoC from the project's venv.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):   # run as a script by FuseSoC: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARAMETERS = ("engine", "config", "target", "params")
WAIVER_FILE = Path(__file__).resolve().parent / "lint_waivers.vlt"   # synth.lint.WAIVER_FILE
WAIVERS = "moe_rtl_lint_waivers.vlt"
TARGETS = ("generic", "ecp5")


class GeneratorError(Exception):
    """A bad generator input: the message names the field and the value."""


def _load(path: Path) -> dict:
    try:
        import yaml
    except ImportError:
        raise GeneratorError("PyYAML is not installed (pip install pyyaml; FuseSoC "
                             "depends on it)") from None
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise GeneratorError(f"input file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise GeneratorError(f"input file {path}: not YAML ({exc})") from None
    if not isinstance(data, dict):
        raise GeneratorError(f"input file {path}: expected a mapping, got {type(data).__name__}")
    return data


def check_input(data: dict):
    """(vlnv, Design, target) from a generator input; GeneratorError on a bad one."""
    from .engines import ENGINES, Design, UsageError

    gapi = str(data.get("gapi", ""))
    if gapi.split(".")[0] != "1":
        raise GeneratorError(f"gapi: {gapi!r} is not a generator API version 1.x this "
                             f"generator understands")
    vlnv = data.get("vlnv")
    if not isinstance(vlnv, str) or len(vlnv.split(":")) < 3:
        raise GeneratorError(f"vlnv: {vlnv!r} is not a core name vendor:library:name[:version]")
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise GeneratorError(f"parameters: expected a mapping, got {params!r}")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise GeneratorError(f"parameters: unknown parameter {unknown[0]!r} "
                             f"(known: {', '.join(PARAMETERS)})")
    engine = params.get("engine")
    if engine not in ENGINES:
        raise GeneratorError(f"parameters.engine: {engine!r} is not one of {', '.join(ENGINES)}")
    config = params.get("config", "default")
    if not isinstance(config, str):
        raise GeneratorError(f"parameters.config: {config!r} is not a configuration name")
    target = params.get("target", "generic")
    if target not in TARGETS:
        raise GeneratorError(f"parameters.target: {target!r} is not one of {', '.join(TARGETS)}")
    overrides = params.get("params", [])
    if isinstance(overrides, str) or not isinstance(overrides, list) \
            or not all(isinstance(p, str) for p in overrides):
        raise GeneratorError(f"parameters.params: {overrides!r} is not a list of 'k=v' strings")
    design = Design(engine, config, tuple(overrides))
    try:
        design.config()          # unknown config / field / bad value
    except UsageError as exc:
        raise GeneratorError(f"parameters: {exc}") from None
    return vlnv, design, target


def core_text(vlnv: str, manifest: dict) -> str:
    """The CAPI2 core describing the generated files."""
    import yaml

    params = ", ".join(f"{k}={v}" for k, v in manifest["params"].items())
    core = {
        "name": vlnv,
        "description": (f"moe-rtl {manifest['engine']} ({manifest['config']}, "
                        f"{manifest['target']}): top module {manifest['top']}; {params}"),
        "filesets": {
            "rtl": {"files": list(manifest["files"]), "file_type": "verilogSource"},
            # Verilator reads it (other tools pass a vlt file by): the project's
            # lint waivers, limited to the generated moe_*.v files
            "verilator_waivers": {"files": [WAIVERS], "file_type": "vlt"},
        },
        "targets": {"default": {"filesets": ["rtl", "verilator_waivers"]}},
    }
    return "CAPI=2:\n" + yaml.safe_dump(core, sort_keys=False, width=1000)


def generate(input_file: Path, outdir: Path = Path(".")) -> Path:
    """Run the generator on ``input_file``; returns the written core file."""
    from .verilog import write

    vlnv, design, target = check_input(_load(input_file))
    outdir = Path(outdir)
    core_file = outdir / f"{vlnv.split(':')[2]}.core"
    for f in (outdir / f"{design.top()}.v", outdir / f"{design.engine}.f",
              outdir / f"{design.engine}.json", outdir / WAIVERS, core_file):
        if f.exists():
            raise GeneratorError(f"output: {f} exists; the generator writes into a fresh "
                                 f"folder (FuseSoC gives it one) and overwrites nothing")
    manifest = write(design, outdir, target=target)
    shutil.copyfile(WAIVER_FILE, outdir / WAIVERS)
    core_file.write_text(core_text(vlnv, manifest))
    return core_file


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python synth/fusesoc_gen.py <generator input .yml> "
              "(FuseSoC runs it; see cores/generators.core)", file=sys.stderr)
        return 2
    try:
        core = generate(Path(argv[0]))
    except GeneratorError as exc:
        print(f"moe-rtl generator: {exc}", file=sys.stderr)
        return 2
    print(f"moe-rtl generator: wrote {core}")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        from synth import fusesoc_gen as _self   # relative imports need the package
        sys.exit(_self.main())
    sys.exit(main())
