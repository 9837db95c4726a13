"""Engine 3 golden model: CIM mapping of Monarch weights, the controller's program, cycle model.

One API serves the golden model, the RTL bench and the benchmark:

* :mod:`.config` - :class:`CIMConfig`, the hardware parameters (also taken by
  ``hdl.cim.build``).
* :mod:`.mapper` - :func:`map_monarch` places the L and R blocks of one or more Monarch
  matrices on ``m x m`` CIM arrays with the ``"linear"``, ``"sparse"`` (SparseMap) or
  ``"dense"`` (DenseMap) strategy and derives the step schedule (the array model and
  the strategies are described there).
* :mod:`.isa` - the controller's binary program format (64-bit words,
  :data:`INSTR_LAYOUT`; docs/cim.md), its encoders and :func:`decode_program`.
* :mod:`.program` - :func:`encode_program` (a mapping and its matrices as a program),
  activation beats in, result beats out.
* :mod:`.execute` - :func:`execute` runs a program word by word exactly as the RTL does:
  same state, same checks (and error codes) on malformed programs, same per-instruction
  cycle counts; the RTL bench compares its outputs and cycle counts with it.
* :mod:`.cycles` - :func:`token_cycles` / :func:`load_cycles`, the cycle model straight
  from a mapping (for shapes too large to encode or simulate).
* :mod:`.evaluate` - :func:`evaluate` / :func:`evaluate_all`: arrays, utilization,
  footprint, FLOPs, cycles, ADC bits and energy per token of each mapping (and the
  unfactored baseline); :mod:`.energy` - :class:`EnergyConfig`, the energy parameters
  and the ADC resolution rule; :mod:`.paper` - the paper-claim table
  (``python -m golden.cim.paper``).
* :mod:`.activity` - :func:`program_activity`: the ADC range a program exercises (the
  tile's ``adc_rows`` / ``adc_bits``); :mod:`.picture` - :func:`placement_svg`.
"""
from .activity import Activity, program_activity, rows_bits
from .config import CIMConfig, model_config
from .energy import EnergyConfig, adc_bits
from .evaluate import MAPPINGS, Evaluation, evaluate, evaluate_all
from .cycles import load_cycles, program_cycles, run_mapping, token_cycles
from .execute import (ExecResult, cost_cfg, cost_input, cost_loadw, cost_mid, cost_output,
                      cost_step, execute, step_groups)
from .isa import (ARGS_LAYOUT, ARGS_OF, ARRAY_BITS, ERROR_CODES, ERRORS, INSTR_LAYOUT,
                  LINE_BITS, MASK_BITS, MAX_ARRAYS, MAX_LINES, MAX_SLOTS, MODE_LAYOUT, OP_CFG,
                  OP_INPUT, OP_LOADW, OP_MID, OP_OUTPUT, OP_STEP, OPCODES, PHASE_IDLE, PHASE_L,
                  PHASE_R, USED_BITS, Instr, column_words, decode_program, decode_word, enc_cfg,
                  enc_loadw, enc_step, set_field)
from .mapper import STRATEGIES, Block, Mapping, Step, array_weights, map_monarch
from .picture import bars_svg, placement_svg
from .program import Program, encode_program, pack_inputs, unpack_outputs

__all__ = [
    "CIMConfig", "model_config",
    "load_cycles", "program_cycles", "run_mapping", "token_cycles",
    "ExecResult", "cost_cfg", "cost_input", "cost_loadw", "cost_mid", "cost_output",
    "cost_step", "execute", "step_groups",
    "ARGS_LAYOUT", "ARGS_OF", "MODE_LAYOUT", "ARRAY_BITS", "ERROR_CODES", "ERRORS",
    "INSTR_LAYOUT", "LINE_BITS", "MASK_BITS",
    "MAX_ARRAYS", "MAX_LINES", "MAX_SLOTS", "OP_CFG", "OP_INPUT", "OP_LOADW", "OP_MID",
    "OP_OUTPUT", "OP_STEP", "OPCODES", "PHASE_IDLE", "PHASE_L", "PHASE_R", "USED_BITS",
    "Instr", "column_words", "decode_program", "decode_word", "enc_cfg", "enc_loadw",
    "enc_step", "set_field",
    "STRATEGIES", "Block", "Mapping", "Step", "array_weights", "map_monarch",
    "Program", "encode_program", "pack_inputs", "unpack_outputs",
    "Activity", "program_activity", "rows_bits", "EnergyConfig", "adc_bits",
    "MAPPINGS", "Evaluation", "evaluate", "evaluate_all", "bars_svg", "placement_svg",
]
