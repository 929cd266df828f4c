"""Rewrites of the exported graph in OpenVINO's copy of it: faster on OpenVINO's CPU plugin,
same values (numbers: docs/cpu_precisions.md)."""

from __future__ import annotations

import numpy as np

from .loader import import_openvino


def layernorm_means_as_convs(model) -> int:
    """Rewrite the exported LayerNorms' channel means for OpenVINO, in place; returns how many.

    The ONNX graph computes a LayerNorm's statistics as GEMMs, ``(1, C) row of 1/C @ x (B, C, T)``
    (fast on ONNX Runtime). OpenVINO runs such a GEMM, or a ``ReduceMean`` over the channel
    axis, on a plain (B, C, T) layout, while the convolutions around it keep channels-last or
    channel-blocked layouts: every LayerNorm then paid two whole-tensor layout reorders. Here each
    mean becomes a 1-output-channel 1x1 ``Convolution`` with weights 1 (an exact sum, accumulated
    in float32) times 1/C, which runs on the layout the tensor already has
    (docs/decisions.md#layernorm-sum-convs). The scaling
    Multiply keeps the MatMul's friendly name and the convolution gets it plus ``/sum``, so the
    int8 ignored scope (``INT8_IGNORED``) still keeps both in float.
    """
    ov = import_openvino()
    from openvino.passes import ConstantFolding, Manager

    manager = Manager()
    manager.register_pass(ConstantFolding())  # the 1/C row is built by ops in the ONNX graph
    manager.run_passes(model)
    opset = ov.opset13
    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or any(op.get_attributes().get(k) for k in ("transpose_a", "transpose_b")):
            continue
        row = op.input_value(0).get_node()
        shape = op.input_value(1).get_partial_shape()
        if row.get_type_name() != "Constant" or shape.rank.is_dynamic or shape.rank.get_length() != 3:
            continue
        w = row.get_data()
        if w.ndim != 2 or w.shape[0] != 1 or not np.allclose(w, 1.0 / w.shape[1], rtol=1e-6, atol=0.0):
            continue
        C = w.shape[1]
        if shape[1].is_static and shape[1].get_length() != C:
            continue
        total = opset.convolution(op.input_value(1), opset.constant(np.ones((1, C, 1), dtype=np.float32)),
                                  [1], [0], [0], [1])
        total.set_friendly_name(op.get_friendly_name() + "/sum")
        mean = opset.multiply(total, opset.constant(np.array(1.0 / C, dtype=np.float32)))
        mean.set_friendly_name(op.get_friendly_name())
        for target in op.output(0).get_target_inputs():
            target.replace_source_output(mean.output(0))
        count += 1
    model.validate_nodes_and_infer_types()
    return count


# Name prefixes of the network body marked for bf16: the backbone and neck (the ONNX exporter's
# module paths, kept by OpenVINO and NNCF). The heads' trunk was not under the graph-tail rule
# (marking it too changed no node's precision), so the heads stay unmarked.
BODY_PREFIXES = ("/model/backbone/", "/model/neck/")


def mark_body_reduced_precision(model) -> int:
    """Let OpenVINO's CPU plugin run the network body in its reduced float precision; returns
    how many nodes were marked.

    With ``INFERENCE_PRECISION_HINT`` bf16 the plugin keeps in float32 every node from which a
    model output can be reached without passing a convolution or MatMul (its "graph tail" rule,
    there for the accuracy of final results). Our level masks are sliced inside the backbone
    blocks and, fused with the mask products of the residual stream, reach the decoded segment
    outputs: the rule took in the backbone's whole residual stream (92 of 273 element-wise
    nodes in float32 at THUMOS size, with a layout-and-precision reorder at every conv). The
    plugin's per-node ``enforceBF16evenForGraphTail`` flag lifts the rule; set here on the body
    (backbone and neck) only, so the true tail (decode after the heads) stays float32
    (docs/decisions.md#bf16-body). OpenVINO versions that do not know the flag ignore it. Stored as a
    bool: as a string, the throughput hint's streams, compiled at once, converted it
    concurrently and crashed the process (OpenVINO 2026.4).
    """
    count = 0
    for op in model.get_ops():
        if op.get_friendly_name().startswith(BODY_PREFIXES):
            op.set_rt_info(True, "enforceBF16evenForGraphTail")
            count += 1
    return count
