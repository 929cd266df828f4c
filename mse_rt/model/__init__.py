"""The MSE-TAD network (docs/spec/model.md), its checkpoints, and the graph every backend runs.

- :mod:`.layers`: masked conv, channel LayerNorm, scales;
- :mod:`.mse_block`: the MSE block (LDM + GTM + AFM) and its masked global attention;
- :mod:`.network`: backbone, neck, heads, :class:`MSETAD`, :func:`build_model`;
- :mod:`.checkpoint`: reading and checking reference checkpoints (docs/spec/checkpoint.md);
- :mod:`.detector_graph`: network + dense decode, the module exported to ONNX.
"""

from .checkpoint import load_checkpoint
from .network import MSETAD, build_model, build_random_model

__all__ = ["MSETAD", "build_model", "build_random_model", "load_checkpoint"]
