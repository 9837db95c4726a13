# amaranth: UnusedElaboratable=no
"""Formal proofs (formal/, docs/formal.md): each proof of formal.proofs.PROOFS runs
through yowasp-sby (smtbmc + yices). A proof must pass; a planted bug must make its
proof fail; a known design bug is an xfail (strict: fixing it must remove the mark)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from formal import core
from formal.proofs import BY_NAME, PROOFS

ROOT = Path(__file__).resolve().parent.parent


def _param(p):
    marks = []
    if p.known_bug:
        marks.append(pytest.mark.xfail(reason=p.known_bug, strict=True))
    return pytest.param(p.name, id=p.name, marks=marks)


@pytest.mark.parametrize("name", [_param(p) for p in PROOFS])
def test_proof(name, tmp_path):
    p = BY_NAME[name]
    r = core.run(p, tmp_path)
    if p.expect:
        assert r.status == "PASS", f"{name}: {r.status}: {r.failed() or r.log[-3000:]}"
    else:
        # the planted bug is found as a failed assertion, not as a tool error
        assert r.status == "FAIL" and r.failed(), f"{name}: {r.status}: {r.log[-3000:]}"


def test_sby_file_and_tools(tmp_path):
    """The .sby a proof writes names the solver, mode and depth it claims."""
    p = BY_NAME["skid_d2"]
    sby = core.write(p, tmp_path)
    text = sby.read_text()
    assert f"mode {p.mode}\n" in text and f"depth {p.depth}\n" in text
    assert f"smtbmc {core.SOLVER}" in text
    assert (sby.parent / f"{p.name}.il").read_text().startswith("attribute")
    core.tools()    # raises FormalError naming a missing tool


def test_cli_refuses_foreign_out_dir_and_unknown_proof(tmp_path):
    """`python -m formal` never writes into a folder it did not make, and an
    unknown proof name is exit 2 with a message, no traceback."""
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    run = lambda *a: subprocess.run([sys.executable, "-m", "formal", *a], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120)
    r = run("-k", "skid_d2", "-o", str(foreign))
    assert r.returncode == 2 and "not made by this tool" in r.stderr
    assert sorted(x.name for x in foreign.iterdir()) == ["notes.txt"]
    r = run("-k", "no_such_proof", "-o", str(tmp_path / "f"))
    assert r.returncode == 2 and "no proof matches" in r.stderr and "Traceback" not in r.stderr


def test_sptc_formal_flag_off_by_default():
    """The SpTC's Asserts exist only with formal=True (the sptc_small proof builds
    that): without it the netlist has no check cell."""
    from amaranth.back import rtlil
    from hdl.sptc import CONFIGS, SparseTensorCore
    plain = rtlil.convert(SparseTensorCore(CONFIGS["small"]), name="t", emit_src=False)
    assert "$check" not in plain and "formal_pick" not in plain
    # the planted bug of bug_sptc_fifo_drop exists only in a formal build
    with pytest.raises(ValueError, match="formal_bug: 'drop'"):
        SparseTensorCore(CONFIGS["small"], formal_bug="drop")
    with pytest.raises(ValueError, match="formal_bug: 'lose'"):
        SparseTensorCore(CONFIGS["small"], formal=True, formal_bug="lose")
