"""Shared fixtures of the FPGA flow tests (tests/test_synth_*.py): a nextpnr JSON
report and a router2 iteration log line."""


REPORT = {
    "utilization": {"TRELLIS_COMB": {"used": 1000, "available": 83640},
                    "TRELLIS_FF": {"used": 1500, "available": 83640},
                    "MULT18X18D": {"used": 130, "available": 156},
                    "DP16KD": {"used": 8, "available": 208}},
    "fmax": {"$glbnet$clk": {"achieved": 123.4, "constraint": 150.0}},
    "critical_paths": [{"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": [
        {"type": "clk-to-q", "from": {"cell": "a_reg", "port": "CLK"},
         "to": {"cell": "a_reg", "port": "Q0"}, "delay": 0.5},
        {"type": "routing", "net": "n1", "from": {"cell": "a_reg", "port": "Q0"},
         "to": {"cell": "lut1", "port": "A"}, "delay": 1.5},
        {"type": "logic", "from": {"cell": "lut1", "port": "A"},
         "to": {"cell": "lut1", "port": "F"}, "delay": 0.25},
        {"type": "routing", "net": "n2", "from": {"cell": "lut1", "port": "F"},
         "to": {"cell": "b_reg", "port": "DI0"}, "delay": 1.0},
        {"type": "setup", "from": {"cell": "b_reg", "port": "DI0"},
         "to": {"cell": "b_reg", "port": "CLK"}, "delay": 0.1}]},
        {"from": "<async>", "to": "posedge $glbnet$clk", "path": [
            {"type": "routing", "net": "rst", "from": {"cell": "rst_io", "port": "O"},
             "to": {"cell": "b_reg", "port": "LSR"}, "delay": 9.0}]}],
}


def iter_line(i, over, tmgfail=None):
    tmg = "" if tmgfail is None else f" tmgfail={tmgfail}"
    return f"Info:     iter={i} wires=306000 overused={over} overuse={over}{tmg} archfail=NA"
