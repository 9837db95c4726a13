"""Verilog generation and the open FPGA flow (Yosys + nextpnr) for moe-rtl."""
