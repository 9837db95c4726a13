// Behavioural models of the two ECP5 primitives hdl/fpga.py instantiates, for
// simulating the FPGA flavour of a design (sim.sptc.build_design(target="ecp5")).
// Written from Lattice's sysDSP and slice documentation, independently of the
// generic RegMul/replicas logic they are compared against: only the features
// hdl/fpga.py uses (one clock CLK0, enable CE0, synchronous reset, A/B input
// registers, output register, SIGNEDA/SIGNEDB; no cascade, no pipeline register).
module MULT18X18D (A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0, P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35);
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTC_CLK = "NONE";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter GSR = "ENABLED";
  parameter RESETMODE = "SYNC";
  parameter SOURCEB_MODE = "B_SHIFT";
  parameter MULT_BYPASS = "DISABLED";
  input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17;
  input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17;
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0;
  output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35;
  wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
  wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
  reg [17:0] a_q = 18'd0, b_q = 18'd0;
  reg sa_q = 1'b0, sb_q = 1'b0;
  reg [35:0] p_q = 36'd0;
  always @(posedge CLK0) if (CE0) begin
    a_q <= RST0 ? 18'd0 : a_in;  b_q <= RST0 ? 18'd0 : b_in;
    sa_q <= SIGNEDA;  sb_q <= SIGNEDB;
  end
  wire [17:0] a = (REG_INPUTA_CLK == "NONE") ? a_in : a_q;
  wire [17:0] b = (REG_INPUTB_CLK == "NONE") ? b_in : b_q;
  wire sa = (REG_INPUTA_CLK == "NONE") ? SIGNEDA : sa_q;
  wire sb = (REG_INPUTB_CLK == "NONE") ? SIGNEDB : sb_q;
  // 36-bit product of the operands, each read as signed or unsigned
  wire signed [36:0] ax = {{19{sa & a[17]}}, a};
  wire signed [36:0] bx = {{19{sb & b[17]}}, b};
  wire signed [73:0] prod = ax * bx;
  wire [35:0] p_comb = prod[35:0];
  always @(posedge CLK0) if (CE0) p_q <= RST0 ? 36'd0 : p_comb;
  wire [35:0] p = (REG_OUTPUT_CLK == "NONE") ? p_comb : p_q;
  assign P0 = p[0];
  assign P1 = p[1];
  assign P2 = p[2];
  assign P3 = p[3];
  assign P4 = p[4];
  assign P5 = p[5];
  assign P6 = p[6];
  assign P7 = p[7];
  assign P8 = p[8];
  assign P9 = p[9];
  assign P10 = p[10];
  assign P11 = p[11];
  assign P12 = p[12];
  assign P13 = p[13];
  assign P14 = p[14];
  assign P15 = p[15];
  assign P16 = p[16];
  assign P17 = p[17];
  assign P18 = p[18];
  assign P19 = p[19];
  assign P20 = p[20];
  assign P21 = p[21];
  assign P22 = p[22];
  assign P23 = p[23];
  assign P24 = p[24];
  assign P25 = p[25];
  assign P26 = p[26];
  assign P27 = p[27];
  assign P28 = p[28];
  assign P29 = p[29];
  assign P30 = p[30];
  assign P31 = p[31];
  assign P32 = p[32];
  assign P33 = p[33];
  assign P34 = p[34];
  assign P35 = p[35];
endmodule

// Slice flip-flop: REGSET "RESET", SRMODE "LSR_OVER_CE" (synchronous reset that
// wins over the clock enable), CEMUX "1"/"CE", CLKMUX "CLK".
module TRELLIS_FF (CLK, LSR, CE, DI, Q);
  parameter GSR = "ENABLED";
  parameter CEMUX = "1";
  parameter CLKMUX = "CLK";
  parameter LSRMUX = "LSR";
  parameter REGSET = "RESET";
  parameter SRMODE = "LSR_OVER_CE";
  input CLK, LSR, CE, DI;
  output reg Q = (REGSET == "SET");  // configuration loads the set/reset value
  wire en = (CEMUX == "1") ? 1'b1 : CE;
  always @(posedge CLK)
    if (LSR) Q <= (REGSET == "SET");
    else if (en) Q <= DI;
endmodule
