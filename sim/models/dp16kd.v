// Behavioural model of the ECP5 DP16KD block RAM, for the modes tickpath drives it in:
// both ports at one data width (1, 2, 4, 9, 18, or 36 as a pseudo dual port), no chip selects,
// no resets, NOREG or OUTREG per port. Pin conventions as Yosys's $__DP16KD_ / $__PDPW16KD_
// mapping (techlibs/lattice/brams_map_16kd.v) drives them:
//   - the word address is AD[13:s], s = 0, 1, 2, 3, 4, 5 for widths 1, 2, 4, 9, 18, 36;
//   - 18 bits: AD[1:0] of the writing port are byte enables (DI[8:0], DI[17:9]);
//   - 36 bits: port A writes (WEA high; its AD[3:0] are the byte enables of DIA[8:0],
//     DIA[17:9], DIB[8:0], DIB[17:9]), port B reads ({DOB, DOA}); each half of the
//     output goes through its own port's output register (A's clocked by CLKA and OCEA);
//   - OUTREG: the word read at one clock edge leaves the output register at the next edge
//     on which OCE is high.
// A read of the word written by the other port at the same edge gives X (undefined in the
// hardware); pins out of these conventions stop the simulation with an error.
`timescale 1ns/1ps
module DP16KD (
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5,
        DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5,
         DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5,
        DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5,
         DOB4, DOB3, DOB2, DOB1, DOB0
);
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
  parameter INIT_DATA = "STATIC";
  parameter CLKAMUX = "CLKA";
  parameter CLKBMUX = "CLKB";

  localparam W = DATA_WIDTH_A;
  localparam WIDE = (W == 36);
  localparam S = (W == 36) ? 5 : (W == 18) ? 4 : (W == 9) ? 3 : (W == 4) ? 2 : (W == 2) ? 1 : 0;
  localparam DEPTH = 16384 >> S;

  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7,
                     DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7,
                     DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2,
                     ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2,
                     ADB1, ADB0};
  wire [13:0] worda = ada >> S;
  wire [13:0] wordb = adb >> S;

  reg [35:0] mem [0:DEPTH-1];
  reg [35:0] lat_a, lat_b;        // read data as it leaves the array (NOREG outputs)
  reg [35:0] reg_a, reg_b;        // output registers
  integer i;
  initial begin
    for (i = 0; i < DEPTH; i = i + 1) mem[i] = 36'd0;
    lat_a = 0; lat_b = 0; reg_a = 0; reg_b = 0;
    if (DATA_WIDTH_A != DATA_WIDTH_B) begin
      $display("DP16KD model: mixed widths %0d/%0d are not modelled", DATA_WIDTH_A, DATA_WIDTH_B);
      $finish;
    end
    if (!(W == 1 || W == 2 || W == 4 || W == 9 || W == 18 || W == 36)) begin
      $display("DP16KD model: no width %0d", W);
      $finish;
    end
  end

  // the byte enables of a write (all on below 18 bits)
  function [3:0] enables(input [13:0] ad);
    enables = WIDE ? ad[3:0] : (W == 18) ? {2'b00, ad[1:0]} : 4'b0001;
  endfunction
  // merge `data` into `old` under the byte enables
  function [35:0] merged(input [35:0] old, input [35:0] data, input [3:0] be);
    integer b;
    begin
      merged = old;
      if (W < 18) merged = data;
      else for (b = 0; b < 4; b = b + 1) if (be[b]) merged[b*9 +: 9] = data[b*9 +: 9];
    end
  endfunction

  wire write_a = WIDE ? CEA : (CEA & WEA);
  wire write_b = !WIDE & CEB & WEB;
  wire [35:0] wdata_a = WIDE ? {dib, dia} : {18'd0, dia};
  wire collision = write_a & (enables(ada) != 0) & CEB & !WEB & (worda == wordb);

  always @(posedge CLKA) begin
    if (CSA0 | CSA1 | CSA2 | RSTA) begin
      $display("DP16KD model: %m: chip select or reset driven on port A"); $finish;
    end
    if (WIDE & !WEA) begin
      $display("DP16KD model: %m: 36-bit mode wants WEA high"); $finish;
    end
    if (write_a) begin
      if ((W < 18 && S > 0 && (ada & ((14'd1 << S) - 1)) != 0) || (W == 18 && ada[3:2] != 0)
          || (WIDE && ada[4] != 0)) begin
        $display("DP16KD model: %m: address bits below the word address set on port A");
        $finish;
      end
      mem[worda] <= merged(mem[worda], wdata_a, enables(ada));
    end else if (CEA & !WIDE) begin
      lat_a <= mem[worda];
    end
    if (OCEA) reg_a <= WIDE ? lat_b : lat_a;
  end

  always @(posedge CLKB) begin
    if (CSB0 | CSB1 | CSB2 | RSTB) begin
      $display("DP16KD model: %m: chip select or reset driven on port B"); $finish;
    end
    if (write_b) begin
      mem[wordb] <= merged(mem[wordb], {18'd0, dib}, enables(adb));
    end else if (CEB) begin
      if ((W < 36 && S > 0 && W != 18 && (adb & ((14'd1 << S) - 1)) != 0) || (WIDE && adb[4:0] != 0)) begin
        $display("DP16KD model: %m: address bits below the word address set on port B");
        $finish;
      end
      lat_b <= collision ? 36'bx : mem[wordb];
    end
    if (OCEB) reg_b <= lat_b;
  end

  // 36 bits: the low half leaves on port A's pins (through its register), the high on B's
  wire [17:0] out_a = WIDE ? ((REGMODE_A == "OUTREG") ? reg_a[17:0] : lat_b[17:0])
                           : ((REGMODE_A == "OUTREG") ? reg_a[17:0] : lat_a[17:0]);
  wire [17:0] out_b = WIDE ? ((REGMODE_B == "OUTREG") ? reg_b[35:18] : lat_b[35:18])
                           : ((REGMODE_B == "OUTREG") ? reg_b[17:0] : lat_b[17:0]);
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5,
          DOA4, DOA3, DOA2, DOA1, DOA0} = out_a;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5,
          DOB4, DOB3, DOB2, DOB1, DOB0} = out_b;
endmodule
