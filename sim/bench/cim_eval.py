"""The CIM engine as its paper evaluates it (``golden.cim.evaluate``), for ``make bench``.

Per mapping (``unfactored`` dense weights, Monarch ``linear``, ``sparse`` = SparseMap,
``dense`` = DenseMap): arrays, utilization, footprint and FLOP reduction against the
unfactored matrix, ADC bits, cycles and energy per token, each figure beside the
paper's claim (``golden.cim.paper.paper_rows``: claim, paper figure, definition and
baseline). Two kinds of tables:

* ``sweep``: one n x n Monarch matrix (b = sqrt(n)) per (n, b, array size m), n in
  256/1024/4096, m in 64/128/256 (the bench's sweep);
* ``preset``: one MoE layer of every model preset (``golden.trace.PRESETS``) held on the
  arrays together: (routed + shared experts) x gate/up/down = K Monarch matrices, each
  n x n with n = 1024, b = 32 (the paper's BERT-large-like setup,
  ``golden.cim.paper.SETUP_N``), on m = 64/128/256 arrays. The tile's Monarch form is
  square (n = b*b, b a power of two); the presets' hidden x ffn projections are not
  (of their full sizes only Mixtral-8x7B's hidden 4096 is such a square, and their
  kit-scaled sizes hidden/16 are 128-448), so each projection counts as one n x n
  matrix and the preset sets K. The hidden/ffn sizes are recorded beside.

Cycles and energy are per token through every matrix mapped (the golden model's
definition: for a preset layer, a token through all K matrices, not only its top-k
experts'). Rows go into ``build/bench/cim.json`` with ``kind`` "eval" (one per mapping
and table), "paper" (the claim table, each claim naming the eval fields it is compared
with) and "energy_config" (the energy parameters every row used); ``build/bench/cim.md``
has the tables.
"""
from __future__ import annotations

from golden import cim as gc
from golden.cim import paper

SWEEP_N = (256, 1024, 4096)
SWEEP_M = (64, 128, 256)
PRESET_N, PRESET_B = paper.SETUP_N, paper.SETUP_B
PROJECTIONS = ("gate", "up", "down")
QUICK_PRESETS = ("mixtral-8x7b", "qwen2-moe", "deepseek-moe-16b", "qwen3-30b-a3b")  # the kit's

#: paper claim -> the eval fields it is compared with (the md column it heads)
CLAIM_FIELDS = {
    "DenseMap mean array utilization": ("utilization",),
    "utilization gain over SparseMap": ("utilization",),
    "fewer arrays than a dense mapping": ("arrays", "array_reduction"),
    "memory footprint and FLOPs vs dense": ("footprint_reduction", "flop_reduction"),
    "ADC resolution": ("adc_bits",),
    "latency": ("cycles", "speedup"),
    "energy": ("energy_total_pj", "energy_gain"),
}
EVAL_FIELDS = ("mapping", "label", "n", "b", "array_size", "matrices", "lanes", "arrays",
               "utilization", "array_reduction", "stored_bytes", "unfactored_bytes",
               "footprint_reduction", "macs", "flops", "flop_reduction", "steps", "cycles",
               "permutation_cycles", "speedup", "adc_bits", "adc_bits_baseline",
               "adc_bits_steps", "conversions", "energy_pj", "energy_total_pj", "adc_share",
               "energy_gain")


def eval_row(ev: gc.Evaluation, table: str, **extra) -> dict:
    """One mapping's figures as a JSON row (``Evaluation.as_dict`` without the energy
    parameters, which the ``energy_config`` row holds once)."""
    d = ev.as_dict()
    d.update(speedup=ev.vs_unfactored["speedup"], energy_gain=ev.vs_unfactored["energy_gain"],
             adc_bits_baseline=ev.vs_unfactored["adc_bits_baseline"])
    row = dict(kind="eval", table=table, **extra)
    row.update({k: d[k] for k in EVAL_FIELDS})
    return row


def preset_matrices(name: str) -> int:
    from golden.trace import PRESETS
    p = PRESETS[name]
    return (p.num_experts + p.num_shared) * len(PROJECTIONS)


def sweep_rows() -> list[dict]:
    rows = []
    for n in SWEEP_N:
        b = int(round(n ** 0.5))
        for m in SWEEP_M:
            for ev in gc.evaluate_all(n, b, m).values():
                rows.append(eval_row(ev, f"n={n}, b={b}, m={m}, one matrix", workload="matrix",
                                     preset=None))
    return rows


def preset_rows(quick: bool = False) -> list[dict]:
    """Every preset's layer; ``quick``: the kit presets on 128 x 128 arrays only."""
    from golden.trace import PRESETS
    rows = []
    for name in (QUICK_PRESETS if quick else PRESETS):
        p = PRESETS[name]
        k = preset_matrices(name)
        for m in ((128,) if quick else SWEEP_M):
            title = (f"{name} layer: {p.num_experts}+{p.num_shared} experts x 3 = {k} "
                     f"matrices, n={PRESET_N}, b={PRESET_B}, m={m}")
            for ev in gc.evaluate_all(PRESET_N, PRESET_B, m, matrices=k).values():
                rows.append(eval_row(ev, title, workload="preset", preset=name,
                                     hidden=p.hidden, ffn=p.ffn, top_k=p.top_k))
    return rows


def claim_rows() -> list[dict]:
    return [dict(kind="paper", fields=list(CLAIM_FIELDS[r["claim"]]), **r)
            for r in paper.paper_rows()]


def energy_row() -> dict:
    return dict(kind="energy_config", **gc.EnergyConfig().as_dict())


def build(quick: bool = False) -> list[dict]:
    """Every eval row, the claim rows and the energy parameters."""
    return sweep_rows() + preset_rows(quick) + claim_rows() + [energy_row()]


# ------------------------------------------------------------------ markdown

def _claims(rows) -> dict:
    return {r["claim"]: r for r in rows if r["kind"] == "paper"}


def _headers(claims) -> list[tuple[str, str, object]]:
    """(column title, paper figure, cell formatter) of a per-mapping table."""
    c = lambda name: claims[name]["paper"] if name in claims else "-"   # noqa: E731
    pct = lambda x: f"{100 * x:.1f} %"                                    # noqa: E731
    return [
        ("mapping", "", lambda r: r["label"]),
        ("arrays (fewer vs unfactored)", c("fewer arrays than a dense mapping"),
         lambda r: f"{r['arrays']} ({pct(r['array_reduction'])})"),
        ("utilization", c("DenseMap mean array utilization"), lambda r: pct(r["utilization"])),
        ("footprint / FLOP reduction", c("memory footprint and FLOPs vs dense"),
         lambda r: f"{r['footprint_reduction']:.2f}x / {r['flop_reduction']:.2f}x"),
        ("ADC bits (unfactored)", c("ADC resolution"),
         lambda r: f"{r['adc_bits']} ({r['adc_bits_baseline']})"),
        ("cycles/token (speedup)", c("latency"),
         lambda r: f"{r['cycles']} ({r['speedup']:.2f}x)"),
        ("energy/token nJ (gain)", c("energy"),
         lambda r: f"{r['energy_total_pj'] / 1e3:.1f} ({r['energy_gain']:.2f}x)"),
        ("ADC share", "", lambda r: pct(r["adc_share"])),
    ]


def mapping_table(rows: list[dict], claims: dict) -> list[str]:
    """Markdown lines of one table (the rows of one (n, b, m, K)), paper figures in the
    header."""
    hs = _headers(claims)
    head = [t + (f" [paper: {p}]" if p else "") for t, p, _ in hs]
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(hs)]
            + ["| " + " | ".join(f(r) for _, _, f in hs) + " |" for r in rows])


def claim_table(claims: dict) -> list[str]:
    out = ["| paper claim | paper | compared with | definition (baseline) | ours | why they "
           "differ |", "|---|---|---|---|---|---|"]
    for r in claims.values():
        out.append(f"| {r['claim']} | {r['paper']} | {', '.join(r['fields'])} | "
                   f"{r['definition']} | {r['ours']} | {r['why']} |")
    return out


def markdown(rows: list[dict]) -> str:
    claims = _claims(rows)
    md = ["# CIM engine: mappings as the paper evaluates them", "",
          "From `python -m sim.bench cim` (`golden.cim.evaluate_all`; rows in "
          "`build/bench/cim.json`, kind \"eval\"). Per token through every matrix mapped; "
          "ratios against the unfactored n x n matrix on the same arrays. Column headers "
          "carry the paper's figure; its definition and baseline are in the claim table.",
          "", "## Paper claims, definitions and baselines", ""] + claim_table(claims)
    tables: dict = {}
    for r in rows:
        if r["kind"] == "eval":
            tables.setdefault((r["workload"], r["table"]), []).append(r)
    for heading, wl in (("One matrix per (n, b, m)", "matrix"),
                        ("One MoE layer of each model preset", "preset")):
        md += ["", f"## {heading}"]
        for (w, title), rs in tables.items():
            if w == wl:
                md += ["", f"### {title}", ""] + mapping_table(rs, claims)
    e = next((r for r in rows if r["kind"] == "energy_config"), None)
    if e:
        md += ["", "## Energy parameters (golden.cim.EnergyConfig, pJ)", ""]
        md += [f"- {k}: {v}" for k, v in e.items() if k != "kind"]
    return "\n".join(md) + "\n"


def console(rows: list[dict]) -> str:
    """A compact console table: the sweep and the presets on 128 x 128 arrays."""
    from . import table
    show = [dict(r, energy_nj=r["energy_total_pj"] / 1e3) for r in rows if r["kind"] == "eval"
            and (r["workload"] == "matrix" or r["array_size"] == 128)]
    return table(show, ["workload", "preset", "n", "b", "array_size", "matrices", "mapping",
                        "arrays", "utilization", "footprint_reduction", "flop_reduction",
                        "adc_bits", "cycles", "speedup", "energy_nj", "energy_gain"],
                 {"utilization": "{:.1%}", "footprint_reduction": "{:.1f}x",
                  "flop_reduction": "{:.1f}x", "speedup": "{:.2f}x", "energy_nj": "{:.1f}",
                  "energy_gain": "{:.2f}x"})
