// Behavioural models of the ECP5 primitives hdl/fpga.py instantiates, for
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

// Block RAM: only what hdl/fpga.py's RegReadRAM uses -- port A writes, port B
// reads, both ports the same DATA_WIDTH (1, 2, 4, 9 or 18), WRITEMODE "NORMAL",
// CSDECODE "0b000" with CS tied low, no reset, REGMODE_B "NOREG" or "OUTREG"
// (the output register, enabled by OCEB, behind the synchronous read). The
// contents are modelled as 18432 bits addressed in DATA_WIDTH units (the x18
// address is ADx13..4, x9 ADx13..3, ... x1 ADx13..0; ADA1..0 of an x18 write
// are byte enables). Power-up: contents and output registers zero.
module DP16KD (DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
    CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
    DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
    CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
    DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter GSR = "ENABLED";
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0;
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0;
  input CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0;
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0;
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0;
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0;
  input CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0;
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0;
  localparam W = DATA_WIDTH_A;
  localparam LOW = (W == 18) ? 4 : (W == 9) ? 3 : (W == 4) ? 2 : (W == 2) ? 1 : 0;
  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire [14:0] base_a = (ada >> LOW) * W;
  wire [14:0] base_b = (adb >> LOW) * W;
  // x18 writes: ADA0 enables bits 8..0, ADA1 bits 17..9
  wire [17:0] be = (W == 18) ? {{9{ADA1}}, {9{ADA0}}} : 18'h3ffff;
  reg mem [0:18431];
  reg [17:0] rd_q, out_q;
  integer i;
  initial begin
    for (i = 0; i < 18432; i = i + 1) mem[i] = 1'b0;
    rd_q = 18'd0; out_q = 18'd0;
  end
  always @(posedge CLKA)
    if (CEA && WEA)
      for (i = 0; i < W; i = i + 1)
        if (be[i]) mem[base_a + i] <= dia[i];
  always @(posedge CLKB) begin
    if (CEB)
      for (i = 0; i < 18; i = i + 1)
        rd_q[i] <= (i < W) ? mem[base_b + i] : 1'b0;
    if (OCEB) out_q <= rd_q;
  end
  wire [17:0] dob = (REGMODE_B == "OUTREG") ? out_q : rd_q;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = 18'd0;
endmodule
