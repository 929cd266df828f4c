"""TensorRT compatibility check of an ONNX graph, without TensorRT or a GPU (``mse-rt check-onnx``).

Every node is looked up in a table of the operators the TensorRT ONNX parser (TensorRT 10.x)
supports, with the documented limits that can be checked statically:
- TopK: K must be a constant < 3840;
- Resize: not on BOOL tensors, modes nearest / linear / cubic only;
- Conv / MaxPool / AveragePool: 1D to 3D (1D runs as 2D with a unit dimension);
- attention-style masks: Softmax over a tensor that a BOOL Where / additive -inf mask feeds is
  flagged when the mask constant is -inf (TensorRT fp16 turns it into NaN on fully masked rows);
- INT64 tensors: TensorRT computes in INT32; constants outside the INT32 range are errors,
  other INT64 tensors are listed as narrowed;
- dynamic-shape hazards: data-dependent output shapes (NonZero, Unique, NonMaxSuppression,
  Compress), Loop / If / Scan control flow, and Reshape with a shape that is not built from
  Shape / Constant nodes.
An mse_rt ONNX file also has its integrity checksum verified (:mod:`mse_rt.io.integrity`): changed
bytes are an error (the file is corrupt, whatever TensorRT would make of it), a missing checksum
a warning. Findings are errors (the parser or builder will fail) or warnings (works, with a cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mse_rt.errors import ExportError

# Operators the TensorRT 10 ONNX parser supports (the operator list of the onnx-tensorrt project), by name.
TRT10_SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BitwiseAnd
BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Cast CastLike Ceil Celu Clip Concat ConcatFromSequence Constant
ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout
DynamicQuantizeLinear Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND
Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool LRN LSTM MatMul Max
MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Multinomial Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split
SplitToSequence Sqrt Squeeze STFT Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unique Unsqueeze
Upsample Where Xor
""".split())
DATA_DEPENDENT = {"NonZero", "Unique", "NonMaxSuppression", "Compress"}
CONTROL_FLOW = {"Loop", "If", "Scan"}
TOPK_MAX = 3840
INT32 = np.iinfo(np.int32)


@dataclass
class Finding:
    severity: str  # "error" | "warning"
    node: str
    op: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7} {self.op:>20} {self.node}: {self.message}"


@dataclass
class CompatReport:
    path: str
    n_nodes: int
    ops: dict[str, int]
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        corrupt = any(f.op == "file" for f in self.errors)
        verdict = ("CORRUPT file (integrity checksum mismatch)" if corrupt else
                   "compatible with TensorRT 10" if self.ok else "NOT compatible with TensorRT 10")
        lines = [f"{self.path}: {self.n_nodes} nodes, {len(self.ops)} op types, "
                 f"{len(self.errors)} errors, {len(self.findings) - len(self.errors)} warnings -> {verdict}"]
        lines += [str(f) for f in self.findings]
        return "\n".join(lines)


def _const_values(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    vals = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    vals[n.output[0]] = numpy_helper.to_array(a.t)
    return vals


def _integrity_findings(path: Path, model) -> list[Finding]:
    """The integrity checksum of an mse_rt file as findings (none for a foreign graph)."""
    from mse_rt.io.integrity import CHECKSUM_KEY, IntegrityError, verify_onnx_checksum

    meta = {p.key: p.value for p in model.metadata_props}
    if "mse_rt.config" not in meta:
        return []
    try:
        if verify_onnx_checksum(path, meta.get(CHECKSUM_KEY), allow_unverified=True):
            return []
    except IntegrityError as exc:
        return [Finding("error", "-", "file", f"CORRUPT: {exc}")]
    return [Finding("warning", "-", "file", f"mse_rt file without an integrity checksum ({CHECKSUM_KEY}): "
                                            "its bytes cannot be verified")]


def check_onnx_for_tensorrt(path: str | Path) -> CompatReport:
    """Static TensorRT 10 compatibility report of an ONNX file (see the module docstring)."""
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("check-onnx needs the 'onnx' package: pip install 'mse-rt[onnx]'") from exc
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise ExportError(f"cannot read {path} as ONNX: {type(exc).__name__}: {exc}") from exc
    if len(model.graph.node) == 0:  # an empty file parses as an empty ModelProto
        raise ExportError(f"{path} holds no ONNX graph ({path.stat().st_size} bytes, no nodes): empty or not an ONNX file")
    report_integrity = _integrity_findings(path, model)
    types = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    consts = _const_values(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    ops: dict[str, int] = {}
    report = CompatReport(str(path), len(model.graph.node), ops)
    report.findings += report_integrity
    add = report.findings.append
    narrowed = 0
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
        name = n.name or n.output[0]
        if n.domain not in ("", "ai.onnx"):
            add(Finding("error", name, n.op_type, f"custom domain {n.domain!r} needs a TensorRT plugin"))
            continue
        if n.op_type not in TRT10_SUPPORTED:
            add(Finding("error", name, n.op_type, "not supported by the TensorRT ONNX parser"))
            continue
        if n.op_type in DATA_DEPENDENT:
            add(Finding("warning", name, n.op_type, "data-dependent output shape: slow, blocks CUDA graphs"))
        if n.op_type in CONTROL_FLOW:
            add(Finding("warning", name, n.op_type, "control flow: limited support with dynamic shapes"))
        if n.op_type == "TopK":
            k = consts.get(n.input[1]) if len(n.input) > 1 else None
            if k is None:
                add(Finding("error", name, "TopK", "K is not a constant (TensorRT needs a build-time K)"))
            elif int(np.asarray(k).reshape(-1)[0]) >= TOPK_MAX:
                add(Finding("error", name, "TopK", f"K = {int(np.asarray(k).reshape(-1)[0])} >= {TOPK_MAX}"))
        if n.op_type == "Resize":
            if types.get(n.input[0]) == onnx.TensorProto.BOOL:
                add(Finding("error", name, "Resize", "Resize on a BOOL tensor (cast the mask to float first)"))
            mode = next((a.s.decode() for a in n.attribute if a.name == "mode"), "nearest")
            if mode not in ("nearest", "linear", "cubic"):
                add(Finding("error", name, "Resize", f"mode {mode!r} not supported"))
        if n.op_type in ("Conv", "MaxPool", "AveragePool"):
            ks = next((list(a.ints) for a in n.attribute if a.name == "kernel_shape"), None)
            if ks is not None and not 1 <= len(ks) <= 3:
                add(Finding("error", name, n.op_type, f"{len(ks)}-D kernel; TensorRT supports 1-3 D"))
        if n.op_type in ("Where", "Add") and any(
                (c := consts.get(i)) is not None and c.dtype.kind == "f" and np.isneginf(c).any() for i in n.input):
            add(Finding("warning", name, n.op_type, "-inf mask constant: NaN on fully masked rows in fp16"))
        if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1] not in consts:
            src = producers.get(n.input[1])
            if src is not None and src.op_type not in ("Concat", "Shape", "Constant", "Cast", "Unsqueeze", "Gather"):
                add(Finding("warning", name, "Reshape", f"shape computed by {src.op_type}: check dynamic shapes"))
        for o in n.output:
            if types.get(o) == onnx.TensorProto.INT64:
                narrowed += 1
    # Slice starts / ends of +-INT64_MAX mean "to the end" and are clamped by the parser
    slice_bounds = {n.input[i] for n in model.graph.node if n.op_type == "Slice" for i in (1, 2) if i < len(n.input)}
    other_uses = {i for n in model.graph.node for k, i in enumerate(n.input) if not (n.op_type == "Slice" and k in (1, 2))}
    for cname, val in consts.items():
        if val.dtype == np.int64 and val.size and (val.max() > INT32.max or val.min() < INT32.min):
            if cname in slice_bounds and cname not in other_uses:
                continue
            add(Finding("error", cname, "int64", "INT64 constant outside the INT32 range"))
    if narrowed:
        add(Finding("warning", "-", "int64", f"{narrowed} INT64 tensors will be computed in INT32 by TensorRT "
                                             "(shape arithmetic and lengths: values stay far below 2^31)"))
    for inp in model.graph.input:
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        if any(isinstance(d, str) for d in dims):
            continue
        add(Finding("warning", inp.name, "input", f"static shape {dims}: one engine profile per shape"))
    return report
