"""Golden model of the Logic-PIM unit (Engine 2): configuration, ISA, bit-exact
functional model and the cycle model the RTL is checked against.

The unit sits on the HBM logic die beside one pseudo-channel (pCH). It executes a
stream of 64-bit instructions (:data:`OPCODES`); ``LOAD_TOKENS`` and ``WRITE``
take their operands from a data stream of ``bundle_bits``-wide words; ``GEMM``
streams weight rows out of the DRAM bank bundles against the token vectors held
in its buffer and emits one output value per (row, token).

Everything here is defined once and shared by the RTL bench (tb/pim.py) and the
benchmarks (sim/bench/pim.py):

* :mod:`.config` - :class:`PIMConfig`, every parameter of the unit (the RTL takes
  the same object), the presets and the address map; :class:`HBM3Timing` (from
  :mod:`golden.hbm3`) is the HBM3 5.2 Gbps preset of DESIGN.md in cycles of
  tCK = 0.769 ns, the ns values converted by JEDEC rounding;
* :mod:`.isa` - opcodes, error bits, the instruction word layout, encode/decode;
* :mod:`.program` - :class:`Program` builds instruction words and the data-stream
  words; weight/token word packing;
* :mod:`.execute` - :func:`execute`, the functional golden model (outputs, sticky
  error bits, DRAM contents), bit-exact with the RTL;
* :mod:`.timing` - :func:`predict` / :func:`predict_cycles`, the cycle model: the
  DRAM command scheduler of the RTL replayed command by command (event driven), the
  MAC pipeline and the instruction sequencer, giving the exact cycle count and the
  exact DRAM command trace of an instruction stream with no stream stalls;
* :mod:`.kv` - :class:`KVLayout`, the decode-attention KV cache in the banks
  (SET_KV / APPEND_KV / ATTN, docs/attention.md).
"""
from ..hbm3 import HBM3_5G2, TCK_PS, TIMING_NS, HBM3Timing, jedec_cycles
from .config import (CONFIG_DEFAULT, CONFIG_FPGA, CONFIG_SMALL, PIMConfig, config_from_dict,
                     config_to_dict)
from .execute import PIMResult, UnitState, execute, instr_errors
from .isa import (ARGS_LAYOUT, ARGS_OF, ATTN_OPS, CMD_ACT, CMD_NAMES, CMD_PRE, CMD_RD, CMD_REF,
                  CMD_WR,
                  ERR_ADDR, ERR_FIELD, ERR_NAMES, ERR_OPCODE, ERR_TOKENS, INSTR_BITS,
                  INSTR_LAYOUT, OP_NAMES, OPCODES, decode, encode)
from .kv import KVLayout, head_words, max_capacity
from .program import Program, gemm_program, pack_rows, unpack_words
from .timing import (FIFO_LAT, IFETCH, MAC_DONE, OUT_LAT, Timing, expert_ffn_cycles, predict,
                     predict_cycles, stream_bandwidth)

__all__ = [
    "HBM3_5G2", "TCK_PS", "TIMING_NS", "HBM3Timing", "jedec_cycles",
    "CONFIG_DEFAULT", "CONFIG_FPGA", "CONFIG_SMALL", "PIMConfig", "config_from_dict",
    "config_to_dict",
    "PIMResult", "UnitState", "execute", "instr_errors",
    "ARGS_LAYOUT", "ARGS_OF", "ATTN_OPS",
    "INSTR_LAYOUT", "CMD_ACT", "CMD_NAMES", "CMD_PRE", "CMD_RD",
    "CMD_REF", "CMD_WR", "ERR_ADDR", "ERR_FIELD",
    "ERR_NAMES", "ERR_OPCODE", "ERR_TOKENS", "INSTR_BITS", "OP_NAMES", "OPCODES", "decode",
    "encode",
    "KVLayout", "head_words", "max_capacity",
    "Program", "gemm_program", "pack_rows", "unpack_words",
    "FIFO_LAT", "IFETCH", "MAC_DONE", "OUT_LAT", "Timing", "expert_ffn_cycles", "predict",
    "predict_cycles", "stream_bandwidth",
]
