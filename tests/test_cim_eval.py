"""The CIM evaluation model (golden.cim.evaluate / energy / activity / picture): ADC bits,
footprint, cycles and energy pinned on hand-checked small cases, utilization and arrays
against the mapper, the placement picture, the paper table's entry point."""
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from golden import cim as gc
from golden import monarch as gm
from golden.cim.evaluate import monarch_steps
from golden.errors import FormatError

E = gc.EnergyConfig()


@pytest.mark.parametrize("rows,bits", [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4),
                                       (32, 6), (127, 7), (128, 8), (255, 8), (256, 9)])
def test_adc_bits_one_bit_slices(rows, bits):
    # ceil(log2(rows + 1)): 128 rows of 1-bit x 1-bit products sum to 0..128, 129 values,
    # 2^7 = 128 < 129 <= 256 = 2^8 -> 8 bits (the paper's dense figure)
    assert gc.adc_bits(rows) == bits


def test_adc_bits_multibit_slices():
    # 2-bit inputs and 2-bit cells: each product 0..3*3 = 9; 32 rows -> 0..288, 289 values,
    # 256 < 289 <= 512 -> 9 bits; 1 row -> 0..9, 10 values -> 4 bits
    assert gc.adc_bits(32, dac_bits=2, cell_bits=2) == 9
    assert gc.adc_bits(1, dac_bits=2, cell_bits=2) == 4
    # 1-bit inputs, 4-bit cells: 0..15 per row, 128 rows -> 0..1920 -> 11 bits
    assert gc.adc_bits(128, cell_bits=4) == 11
    with pytest.raises(FormatError, match="dac_bits"):
        gc.EnergyConfig(dac_bits=3)


def test_adc_energy_table():
    # the ISAAC/Saberi table, clamped below 4 bits, doubling per bit above 10
    assert E.adc_energy(8) == 1.67 and E.adc_energy(6) == 1.20
    assert E.adc_energy(3) == E.adc_energy(1) == 0.79
    assert E.adc_energy(12) == pytest.approx(2.38 * 4)
    c = gc.EnergyConfig(adc_pj={4: 1.0, 8: 2.0})
    assert c.adc_energy(6) == pytest.approx(1.5)      # linear between table entries
    # defaults are the cited figures: cell 2.4 mW / 8 arrays * 100 ns / 16384 cells
    assert E.cell_pj == pytest.approx(1.831e-3, rel=1e-3)
    assert E.buffer_pj_per_byte == pytest.approx(20.45 / 32)


def test_n16_hand_checked_all_mappings():
    """n = 16, b = 4 on 16 x 16 arrays (lanes 2), one matrix. By hand:

    unfactored: 1 tile, 256 weight bytes, all 16 rows fire into every column -> 5 bits.
    linear: R and L each a dense 16 x 16 tile (zeros stored): 2 arrays, 512 bytes,
      utilization 2nb / (2 * 256) = 128 / 512 = 25 %, 16 stored rows per column -> 5 bits.
    sparse: one line per factor -> 2 arrays with 4 blocks on the diagonal, 2nb = 128 bytes,
      25 %, a column sees one block: 4 rows -> ceil(log2 5) = 3 bits; 2 steps.
    dense: R line (diagonal 0) and L line (diagonal 1) share 1 array (50 %); blocks s and
      s+1 of a diagonal conflict, so each diagonal fires in 2 steps of 2 blocks {0,2},{1,3}:
      4 steps, 4 rows per column -> 3 bits.
    Footprint reduction n / (2b) = 2 for SparseMap/DenseMap.
    """
    ev = gc.evaluate_all(16, 4, 16)
    want = {"unfactored": (1, 1.0, 256, 5, 1), "linear": (2, 0.25, 512, 5, 2),
            "sparse": (2, 0.25, 128, 3, 2), "dense": (1, 0.5, 128, 3, 4)}
    for k, (arrays, util, stored, bits, steps) in want.items():
        e = ev[k]
        assert (e.arrays, e.utilization, e.stored_bytes, e.adc_bits, e.steps) == \
            (arrays, util, stored, bits, steps), k
    assert ev["dense"].footprint_reduction == ev["sparse"].footprint_reduction == 2
    assert ev["linear"].footprint_reduction == 0.5 and ev["linear"].macs == 512
    assert ev["dense"].macs == gm.counts(16, 4)["monarch_macs"] == 128
    assert ev["dense"].flops == 256 and ev["dense"].flop_reduction == 2
    # cycles by hand (lanes 2): INPUT 1 + 16/2 = 9; each DenseMap step reads slots {0,2}
    # or {1,3} = 8 columns = 4 groups -> 2 + 4 = 6, 4 steps = 24; MID 1 + 1*(1 + 4) = 6;
    # OUTPUT 2 + 8 = 10: 49. Unfactored: 9 + (2 + 8) + 10 = 29, no MID.
    assert ev["dense"].cycles == 49 and ev["dense"].permutation_cycles == 6
    assert ev["unfactored"].cycles == 29 and ev["unfactored"].permutation_cycles == 0
    assert ev["dense"].cycles == gc.token_cycles(gc.map_monarch(16, 4, 16, "dense"),
                                                 gc.model_config(16, 16))


def test_n16_unfactored_energy_by_hand():
    """16 read columns x 8 pulses x 8 slices = 1024 conversions at 5 bits (0.99 pJ);
    cells 256 x 64 pulses-slices x cell_pj; DAC 16 rows x 8 pulses x 0.41667; S+A 1024 x
    0.021; buffer: step 16 activation bytes + 16 x 8 accumulator bytes, token 16 input +
    64 output bytes = 224 bytes x 0.639 pJ."""
    e = gc.evaluate(16, 4, 16, "unfactored")
    p = e.energy_pj
    assert e.conversions == 1024
    assert p["adc"] == pytest.approx(1024 * 0.99)
    assert p["array"] == pytest.approx(256 * 64 * E.cell_pj)
    assert p["dac"] == pytest.approx(16 * 8 * 0.41667)
    assert p["shift_add"] == pytest.approx(1024 * 0.021)
    assert p["buffer"] == pytest.approx(224 * 20.45 / 32)
    assert p["permutation"] == 0
    assert e.adc_share == pytest.approx(p["adc"] / sum(p.values()))


def test_permutation_counted_and_energy_reproducible_from_config():
    base = gc.evaluate(256, 16, 64, "dense")
    # MID: n int32 read + n int8 written into H, per matrix
    assert base.energy_pj["permutation"] == pytest.approx(5 * 256 * E.buffer_pj_per_byte)
    c = gc.EnergyConfig(perm_pj=1.0, adc_pj={k: 2 * v for k, v in E.adc_pj.items()})
    ev = gc.evaluate(256, 16, 64, "dense", energy=c)
    assert ev.energy_pj["permutation"] == pytest.approx(base.energy_pj["permutation"] + 256)
    assert ev.energy_pj["adc"] == pytest.approx(2 * base.energy_pj["adc"])
    for part in ("array", "dac", "shift_add", "buffer"):
        assert ev.energy_pj[part] == pytest.approx(base.energy_pj[part])
    assert ev.energy_config["perm_pj"] == 1.0
    # the layer's figures are the matrix's times K where nothing is shared
    lay = gc.evaluate(256, 16, 64, "sparse", matrices=3)
    one = gc.evaluate(256, 16, 64, "sparse")
    assert lay.arrays == 3 * one.arrays and lay.cycles == 3 * one.cycles
    assert lay.energy_total_pj == pytest.approx(3 * one.energy_total_pj)


@pytest.mark.parametrize("n", [256, 1024, 4096])
@pytest.mark.parametrize("m", [64, 128, 256])
@pytest.mark.parametrize("K", [1, 24])
def test_arrays_utilization_and_cycles_match_the_mapper(n, m, K):
    b = math.isqrt(n)
    cfg = gc.model_config(m, n)
    for strategy in ("sparse", "dense") + (("linear",) if n * K <= 1024 * 24 and m > 64 else ()):
        mp = gc.map_monarch(n, b, m, strategy, matrices=K)
        e = gc.evaluate(n, b, m, strategy, matrices=K)
        assert (e.arrays, e.utilization, e.steps) == (mp.arrays, mp.utilization, len(mp.steps))
        assert e.cycles == sum(gc.token_cycles(mp, cfg, k) for k in range(K))
        assert e.macs == (2 * n * n * K if strategy == "linear" else mp.weight_cells)
        # every Monarch step fires exactly one b x b block into each read column
        if strategy != "linear":
            assert e.adc_bits_steps == {gc.adc_bits(b): len(mp.steps)}
    u = gc.evaluate(n, b, m, "unfactored", matrices=K)
    assert u.arrays == (n // m) ** 2 * K == mp.dense_arrays
    assert u.adc_bits == gc.adc_bits(m)


def test_activity_of_a_program_equals_the_design_for_nonzero_weights():
    cfg = gc.model_config(64, 256)
    rng = np.random.default_rng(3)
    for strategy in gc.STRATEGIES:
        mon = gm.random_monarch(16, rng, lo=1, hi=127)       # no zero weight
        mp = gc.map_monarch(256, 16, 64, strategy)
        prog = gc.encode_program(mp, [mon], 2, cfg)
        xs = [rng.integers(-128, 128, size=256).astype(np.int8) for _ in range(2)]
        act = gc.program_activity(prog.words, cfg, gc.pack_inputs(xs, 16, cfg))
        assert act.tokens == (16, 16) and act.bits == (5, 5)
        design = [s.rows_per_col for s in monarch_steps(mp, cfg)]
        # linear stores whole tiles (64 rows a column) but only the blocks' 16 are nonzero,
        # and its off-diagonal tiles (input line != output line) hold only zeros
        if strategy == "linear":
            design = [16 if s.act_line == s.acc_line else 0 for s in mp.steps]
        assert list(act.steps) == design * 2


def test_as_dict_is_json_and_complete():
    ev = gc.evaluate_all(1024, 32, 128)
    d = json.loads(json.dumps({k: v.as_dict() for k, v in ev.items()}))
    dm = d["dense"]
    for key in ("arrays", "utilization", "stored_bytes", "flops", "cycles", "adc_bits",
                "energy_pj", "adc_share", "array_reduction", "footprint_reduction",
                "flop_reduction", "vs_unfactored", "label", "energy_config"):
        assert key in dm
    assert dm["vs_unfactored"]["adc_bits_baseline"] == 8 and dm["adc_bits"] == 6
    assert dm["array_reduction"] == 1 - 4 / 64
    with pytest.raises(FormatError, match="mapping"):
        gc.evaluate(1024, 32, 128, "diagonal")
    with pytest.raises(FormatError, match="b\\*b"):
        gc.evaluate(1000, 32, 128, "dense")


def test_placement_svg():
    mp = gc.map_monarch(64, 8, 32, "dense")          # one full array, g = 4 diagonals
    root = ET.fromstring(gc.placement_svg(mp))
    ns = "{http://www.w3.org/2000/svg}"
    blocks = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(blocks) == len(mp.blocks) == 16
    assert len({r.get("fill") for r in blocks}) == 4            # one colour per diagonal
    sp = gc.map_monarch(64, 8, 32, "sparse")
    root = ET.fromstring(gc.placement_svg(sp, max_arrays=2))
    fills = {r.get("fill") for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None}
    assert len(fills) == 1                                       # all on diagonal 0
    assert "more arrays" in gc.placement_svg(sp, max_arrays=2)
    ET.fromstring(gc.bars_svg(gc.evaluate_all(256, 16, 64)))


def test_paper_table_command():
    out = subprocess.run([sys.executable, "-W", "error", "-m", "golden.cim.paper"],
                         capture_output=True, text=True, check=True).stdout
    assert "| paper claim | our number | definition (baseline) | why they differ |" in out
    assert out.count("\n| ") == 8       # header and 7 claims
    js = json.loads(subprocess.run([sys.executable, "-m", "golden.cim.paper", "--json"],
                                   capture_output=True, text=True, check=True).stdout)
    assert len(js["claims"]) == 7 and set(js["evaluations"]["128"]) == set(gc.MAPPINGS)
