"""Per-node profile of the OpenVINO backend: kernel, precision, time and GEMM work of each node
(``benchmarks/ov_profile.py`` prints it)."""

from __future__ import annotations

import numpy as np

from ....errors import BackendError


def _gemm_gop(kind: str, op) -> float:
    """Multiply-add work (1e9 ops, 2 per multiply-add) of one node with static shapes:
    Convolution / GroupConvolution (output size x weights per output), MatMul / FullyConnected
    (output size x the reduced dimension); 0 for other kinds or dynamic shapes."""
    try:
        shapes = [list(i.get_partial_shape().to_shape()) for i in op.inputs()]
        out = list(op.output(0).get_partial_shape().to_shape())
    except Exception:  # dynamic shapes: no count
        return 0.0
    n_out = float(np.prod(out)) if out else 0.0
    if kind in ("Convolution", "GroupConvolution") and len(shapes) >= 2:
        w = shapes[1]
        per_out = np.prod(w[2:]) if kind == "GroupConvolution" or len(w) == len(out) + 1 else np.prod(w[1:])
        return 2.0 * n_out * float(per_out) / 1e9
    if (kind == "MatMul" or kind.startswith("FullyConnected")) and len(shapes) >= 2 and out and n_out:
        reduced = float(np.prod(shapes[0])) * out[-1] / n_out  # numel(A) = M * K per output matrix
        return 2.0 * n_out * reduced / 1e9
    return 0.0


def _node_gop(op, source_gop: dict[str, float]) -> float:
    """GEMM work of a runtime-model node: counted from its own shapes, or for a fused Subgraph
    (e.g. the MHA kernel: MatMul-Softmax-MatMul) the sum over the source MatMuls it absorbed
    (``source_gop``: friendly name -> work in the model given to the plugin)."""
    info = op.get_rt_info()
    kind = str(info["layerType"].astype(str)) if "layerType" in info else op.get_type_name()
    if kind == "Subgraph" and "originalLayersNames" in info:
        names = str(info["originalLayersNames"].astype(str)).split(",")
        return sum(source_gop.get(n, 0.0) for n in names)
    return _gemm_gop(kind, op)


def profile_backend(backend, feats, lengths, repeat: int = 3) -> list[dict]:
        """OpenVINO's per-node timing of one forward pass (the median pass of ``repeat``).

        ``feats`` (B, C_in, T) float32, ``lengths`` (B,) int64, checked and laid out like :meth:`infer`.
        Compiles a separate model with ``PERF_COUNT`` (the serving models stay as they are). Returns one dict per
        executed node: ``name`` (OpenVINO node, which keeps the ONNX module path), ``type`` (e.g.
        Convolution, MatMul, FullyConnected, Reorder, Subgraph = fused ops: element-wise, or the
        MHA kernel MatMul-Softmax-MatMul), ``exec`` (kernel and its precision, e.g.
        ``brgconv_avx512_I8``), ``ms`` and ``gop``: the multiply-add work of a Convolution /
        GroupConvolution / MatMul / FullyConnected node, or of the MatMuls a fused Subgraph holds,
        in 1e9 operations (2 per multiply-add); 0 for nodes without GEMM work.
        """
        backend.check_inputs(feats, lengths)
        if repeat < 1:
            raise BackendError(f"repeat must be >= 1, got {repeat}")
        layout, x = backend._feed(feats)
        n = np.ascontiguousarray(lengths.cpu().numpy(), dtype=np.int64)
        m = backend._shaped_model(*feats.shape, layout)
        # a core of its own, without the compiled-blob cache: the profile reads the runtime model as compiled
        from .loader import import_openvino

        compiled = import_openvino().Core().compile_model(m, "CPU", {**backend.config, "PERF_COUNT": True})
        request = compiled.create_infer_request()
        request.infer({"feats": x, "lengths": n})  # first pass: one-time allocations
        runs = []
        for _ in range(repeat):
            request.infer({"feats": x, "lengths": n})
            runs.append(request.get_profiling_info())
        totals = [sum(p.real_time.total_seconds() for p in run) for run in runs]
        run = runs[int(np.argsort(totals)[len(totals) // 2])]
        source = {op.get_friendly_name(): _gemm_gop(op.get_type_name(), op) for op in m.get_ordered_ops()}
        work = {op.get_friendly_name(): _node_gop(op, source) for op in compiled.get_runtime_model().get_ordered_ops()}
        return [{"name": p.node_name, "type": p.node_type, "exec": p.exec_type, "ms": 1e3 * p.real_time.total_seconds(),
                 "gop": work.get(p.node_name, 0.0)} for p in run if p.real_time.total_seconds() > 0]

