"""The folders form layers, golden <- hdl <- tb <- sim <- synth: a module imports only
from its own layer and the ones below it (the numpy golden models know no RTL, the RTL
no bench, the benches no runner or CLI, the runners no FPGA flow). Every import
statement counts, function-local ones too."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("golden", "hdl", "tb", "sim", "synth")


def imported_packages(path: Path, root: Path = ROOT) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute or relative import in a module."""
    pkg = path.relative_to(root).parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:                       # relative: resolved against the package
                base = pkg[:len(pkg) - node.level + 1]
                top = base[0] if base else ""
            else:
                top = (node.module or "").split(".")[0]
            out.add((top, node.lineno))
    return out


def upward_imports(layer: str, root: Path = ROOT) -> list[str]:
    above = LAYERS[LAYERS.index(layer) + 1:]
    bad = []
    for path in sorted((root / layer).rglob("*.py")):
        for top, line in sorted(imported_packages(path, root), key=lambda t: t[1]):
            if top in above:
                bad.append(f"{path.relative_to(root)}:{line} imports {top}")
    return bad


@pytest.mark.parametrize("layer", LAYERS)
def test_no_upward_imports(layer):
    assert (ROOT / layer).is_dir()
    assert upward_imports(layer) == []


def test_the_check_sees_every_kind_of_import(tmp_path):
    """Absolute, dotted and function-local upward imports are caught; relative imports
    and imports from the same or a lower layer are not."""
    mod = tmp_path / "tb" / "sub" / "m.py"
    mod.parent.mkdir(parents=True)
    mod.write_text("import numpy\nimport golden.trace\nfrom hdl import moe\nfrom . import x\n"
                   "from .. import y\nimport synth.flow as f\n"
                   "def g():\n    from sim import traces\n    return traces\n")
    assert imported_packages(mod, tmp_path) == {
        ("numpy", 1), ("golden", 2), ("hdl", 3), ("tb", 4), ("tb", 5), ("synth", 6), ("sim", 8)}
    assert upward_imports("tb", tmp_path) == ["tb/sub/m.py:6 imports synth",
                                              "tb/sub/m.py:8 imports sim"]
    assert upward_imports("sim", tmp_path) == []
