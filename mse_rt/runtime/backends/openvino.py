"""OpenVINO backend (CPU): runs the mse_rt ONNX graph, in fp32, bf16 or int8 (NNCF PTQ).

    det = Detector.from_openvino("model.onnx", precision="bf16", hint="latency")
    det = Detector.from_openvino("model.onnx", precision="int8", calib=["feats/"])   # NNCF, user's files

- ``precision``: "fp32" (OpenVINO is told so: on a BF16 CPU it would otherwise pick bf16 on its
  own), "bf16" (needs a CPU with BF16, e.g. AVX-512 BF16 / AMX; else a :class:`BackendError`
  unless ``allow_fallback=True``, which runs fp32 and says so in ``precision_used``), "int8" (NNCF
  post-training quantization with the transformer preset, calibrated on ``calib`` feature files;
  the LayerNorm-statistic MatMuls and the heads' last convs stay float, the rest of the float
  part runs in bf16 where the CPU has it: the default preset quantizes the LayerNorm arithmetic
  and lost 8 mAP points in the issue's measurement). A CPU without int8 dot-product instructions
  (VNNI, :mod:`mse_rt.runtime.cpu`) raises a :class:`BackendError`; ``allow_fallback=True`` runs
  the float path instead (bf16 where the CPU has it, else fp32) and says so in ``precision_used``.
  ``bias_correction``: NNCF's "fast" (default) or "full" bias correction. Same speed; demo avg mAP
  over 7 calibration sets of 32 videos (fp32 84.90): fast 84.49 on average (84.27-84.98), full
  84.65 (84.45-84.93). Full costs calibration time: THUMOS size, 4 videos, 144 vs 22 s.
- bf16 / int8: the network body (backbone, neck) runs in bf16 on a BF16 CPU, the decode after
  the heads in float32 (:func:`mark_body_reduced_precision`).
- ``hint``: OpenVINO's performance hint, "latency" (one request uses all cores) or "throughput"
  (several streams; pair it with batches or parallel requests). ``threads``: INFERENCE_NUM_THREADS.
- Shapes: each padded length T gets its own statically reshaped compiled model (faster than
  dynamic shapes on CPU; int8 293 vs 410 ms in the issue's measurement), kept in a bounded LRU
  (``max_compiled``, default 8). ``cache_dir`` enables OpenVINO's compiled-blob cache.
- Layout: the Detector hands padded batches over time first (a (B, C, T) view of (B, T, C)
  memory, as features arrive), and those run on a model whose input is declared (B, T, C) through
  OpenVINO's PrePostProcessor: no transposing copy in torch (6-8 ms per THUMOS video), and int8
  244 vs 260 ms per pass. Contiguous (B, C, T) input runs the plain model; outputs are the same
  (bit-identical in fp32).
- Batches: a batch of B videos runs as B single-video requests of the (1, C, T) model
  (``split_batch=True``, the default): at T = 2304 the (4, C, T) model was slower per video than
  B = 1 (int8: 304-344 vs 255 ms per video, 2 threads; the T x T attention of 4 videos leaves the
  cache). With ``hint="throughput"`` those requests run in parallel on OpenVINO's streams
  (an ``AsyncInferQueue`` of the plugin's optimal number of requests): 237 ms per video for 4
  videos with 2 streams. ``split_batch=False`` compiles the (B, C, T) shape instead.
- Threads: start the process with ``OMP_WAIT_POLICY=PASSIVE`` (it must be set before torch is
  imported). Decode runs in torch, whose idle OpenMP threads otherwise spin beside OpenVINO's own
  threads: in some processes that cost bf16 a quarter of its speed (514 vs 412 ms per video at
  T = 2304, 2 threads). The same holds for ONNX Runtime; the eager backend is better off
  without it (9 % slower with PASSIVE).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...config import config_from_json
from ...errors import BackendError, ModelFileError
from ...graph import INPUT_NAMES, OUTPUT_NAMES
from ...onnx_integrity import CHECKSUM_KEY, verify_onnx_checksum
from .base import Backend, ShapeLRU

PRECISIONS = ("fp32", "bf16", "int8")
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
BIAS_CORRECTIONS = ("fast", "full")
# NNCF ignored scope of the int8 recipe (regular expressions over OpenVINO node names, which keep
# the ONNX exporter's module paths): LayerNorm statistics and the heads' last convs
INT8_IGNORED = [r".*norm[^/]*/MatMul.*", r".*/ln(_1)?/MatMul.*", r".*_head/cls_head/conv/Conv.*",
                r".*offset_head/cls_head/conv/Conv.*"]


def _import_openvino():
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendError("the openvino backend needs OpenVINO: pip install 'mse-rt[openvino]'") from exc
    return ov


def cpu_capabilities() -> list[str]:
    """OpenVINO's CPU optimisation capabilities here (e.g. FP32, BF16, INT8)."""
    ov = _import_openvino()
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


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


def layernorm_means_as_convs(model) -> int:
    """Rewrite the exported LayerNorms' channel means for OpenVINO, in place; returns how many.

    The ONNX graph computes a LayerNorm's statistics as GEMMs, ``(1, C) row of 1/C @ x (B, C, T)``
    (fast on ONNX Runtime). OpenVINO runs such a GEMM, or a ``ReduceMean`` over the channel
    axis, on a plain (B, C, T) layout, while the convolutions around it keep channels-last or
    channel-blocked layouts: every LayerNorm then paid two whole-tensor layout reorders. Here each
    mean becomes a 1-output-channel 1x1 ``Convolution`` with weights 1 (an exact sum, accumulated
    in float32) times 1/C, which runs on the layout the tensor already has: int8 network at
    T = 2304 4.5 % faster than with ReduceMean (one process, alternating calls; bf16 with the
    joined-level heads 2.3 %), ReduceMean itself 218 -> 209 ms against the GEMM form. The scaling
    Multiply keeps the MatMul's friendly name and the convolution gets it plus ``/sum``, so the
    int8 ignored scope (``INT8_IGNORED``) still keeps both in float.
    """
    ov = _import_openvino()
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
    (backbone and neck) only, so the true tail (decode after the heads) stays float32. One
    process, alternating calls, T = 2304, network: int8 0.93-0.95x, bf16 0.98x; accuracy in
    docs/cpu_precisions.md. OpenVINO versions that do not know the flag ignore it. Stored as a
    bool: as a string, the throughput hint's streams, compiled at once, converted it
    concurrently and crashed the process (OpenVINO 2026.4).
    """
    count = 0
    for op in model.get_ops():
        if op.get_friendly_name().startswith(BODY_PREFIXES):
            op.set_rt_info(True, "enforceBF16evenForGraphTail")
            count += 1
    return count


def _read_meta(path: Path) -> dict[str, str]:
    try:
        import onnx
    except ImportError as exc:
        raise BackendError("reading mse_rt ONNX metadata needs onnx: pip install 'mse-rt[onnx]'") from exc
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"cannot read {path} as ONNX: {type(exc).__name__}: {exc}") from exc
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("mse_rt.")}


class OpenVinoBackend(Backend):
    """``OpenVinoBackend(path, precision="fp32", hint="latency", threads=None, calib=None, ...)``."""

    name = "openvino"
    prefers_time_first = True

    def __init__(self, path: str | Path, precision: str = "fp32", hint: str = "latency", threads: int | None = None,
                 calib=None, calib_videos: int = 32, allow_fallback: bool = False, max_compiled: int = 8,
                 cache_dir: str | Path | None = None, split_batch: bool = True, bias_correction: str = "fast") -> None:
        ov = _import_openvino()
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"ONNX file not found: {path}")
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if hint not in HINTS:
            raise BackendError(f"hint must be one of {tuple(HINTS)}, got {hint!r}")
        if bias_correction not in BIAS_CORRECTIONS:
            raise BackendError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}")
        meta = _read_meta(path)
        if "mse_rt.config" not in meta:
            raise BackendError(f"{path} is not an mse_rt ONNX graph (no mse_rt metadata)")
        verify_onnx_checksum(path, meta.get(CHECKSUM_KEY))
        try:
            cfg = config_from_json(meta["mse_rt.config"])
        except ValueError as exc:
            raise BackendError(f"the ONNX file's mse_rt.config metadata is not a valid config: {exc}") from exc
        if meta.get("mse_rt.precision", "fp32") != "fp32":
            raise BackendError(f"{path} is a {meta['mse_rt.precision']} graph; give OpenVINO the fp32 export "
                               "(precision is chosen here)")
        super().__init__(cfg, "cpu")
        self.core = ov.Core()
        caps = set(self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        float_precision = "f32"
        self.precision_used = precision
        if precision in ("bf16", "int8"):
            if "BF16" in caps:
                float_precision = "bf16"
            elif precision == "bf16" and not allow_fallback:
                raise BackendError("this CPU has no BF16 support (OpenVINO capabilities: "
                                   f"{sorted(caps)}); use precision='fp32' or allow_fallback=True")
            elif precision == "bf16":
                self.precision_used = "fp32 (no BF16 on this CPU)"
        if precision == "int8":
            from ..cpu import int8_dot_support

            dot, why = int8_dot_support()
            if "INT8" not in caps or dot is False:
                reason = why if dot is False else f"no INT8 support in OpenVINO (capabilities: {sorted(caps)})"
                if not allow_fallback:
                    raise BackendError(f"precision='int8': {reason}; use precision='fp32' / 'bf16', or "
                                       "allow_fallback=True to run the float path instead")
                precision = "bf16" if float_precision == "bf16" else "fp32"
                self.precision_used = f"{precision} (int8 asked: {reason})"
        self.config = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_PRECISION_HINT": float_precision}
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not None:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        model = self.core.read_model(str(path))
        if [i.get_any_name() for i in model.inputs] != list(INPUT_NAMES):
            raise BackendError(f"{path}: inputs {[i.get_any_name() for i in model.inputs]} are not those of an mse_rt graph")
        self.layernorm_mean_convs = layernorm_means_as_convs(model)
        if precision == "int8":
            model = self._quantize(model, calib, calib_videos, bias_correction)
        self.model = model
        self.path = path
        self.hint = hint
        self.split_batch = bool(split_batch)
        self._compiled = ShapeLRU(max_compiled, self._compile)

    def _quantize(self, model, calib, calib_videos: int, bias_correction: str):
        try:
            import nncf
        except ImportError as exc:
            raise BackendError("precision='int8' with OpenVINO needs NNCF: pip install 'mse-rt[openvino]'") from exc
        if calib is None:
            raise BackendError("precision='int8' needs calibration data: calib=[feature files or folders]")
        from ...export.quantize import calibration_inputs

        feeds = calibration_inputs(calib, self.cfg, calib_videos)
        self.calibration = {"videos": len(feeds), "padded_lengths": sorted({int(f["feats"].shape[2]) for f in feeds}),
                            "bias_correction": bias_correction}
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

        # SmoothQuant off: on the q / v projection MatMuls it cost 0.2 demo mAP points (84.31 vs 84.50)
        advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
        return nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(feeds), fast_bias_correction=bias_correction == "fast",
                             advanced_parameters=advanced,
                             ignored_scope=nncf.IgnoredScope(patterns=INT8_IGNORED, validate=False))

    def _shaped_model(self, B: int, C: int, T: int, layout: str):
        """A copy of the model reshaped to (B, C, T); ``layout="NTC"``: its feats input declared
        (B, T, C) (OpenVINO folds that transpose into its own reorder)."""
        m = self.model.clone()
        m.reshape({"feats": [B, C, T], "lengths": [B]})
        if self.config["INFERENCE_PRECISION_HINT"] == "bf16":
            mark_body_reduced_precision(m)
        if layout == "NTC":
            from openvino.preprocess import PrePostProcessor

            ov = _import_openvino()
            ppp = PrePostProcessor(m)
            ppp.input("feats").tensor().set_layout(ov.Layout("NWC"))
            ppp.input("feats").model().set_layout(ov.Layout("NCW"))
            m = ppp.build()
        return m

    @staticmethod
    def _feed(feats: torch.Tensor) -> tuple[str, np.ndarray]:
        """(layout, array) for a checked (B, C, T) float32 tensor: time-first memory (the Detector's
        padded batches) goes as (B, T, C) without a transposing copy, anything else as (B, C, T)."""
        feats = feats.detach().cpu()
        if not feats.is_contiguous() and feats.transpose(1, 2).is_contiguous():
            return "NTC", feats.transpose(1, 2).numpy()
        return "NCT", feats.contiguous().numpy()

    def _compile(self, key: tuple):
        m = self._shaped_model(*key)
        compiled = self.core.compile_model(m, "CPU", self.config)
        queue = None
        if self.hint == "throughput":
            ov = _import_openvino()
            queue = ov.AsyncInferQueue(compiled, max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))
        return compiled, compiled.create_infer_request(), queue

    @staticmethod
    def _outputs(res) -> dict:
        out = {o.get_any_name(): v for o, v in res.items()}
        return {name: np.array(out[name], dtype=np.float32, copy=True) for name in OUTPUT_NAMES}

    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        B, C, T = feats.shape
        n = np.ascontiguousarray(lengths.cpu().numpy(), dtype=np.int64)
        # int8 at T = 2304: 244 (NTC) vs 260 ms (NCT) per pass
        layout, x = self._feed(feats)
        if B == 1 or not self.split_batch:
            _, request, _ = self._compiled.get((B, C, T, layout))
            out = self._outputs(request.infer({"feats": x, "lengths": n}, share_inputs=True))
            return {k: torch.from_numpy(v) for k, v in out.items()}
        _, request, queue = self._compiled.get((1, C, T, layout))
        parts: list = [None] * B
        if queue is None:  # latency hint: one request after the other, each on all threads
            for i in range(B):
                parts[i] = self._outputs(request.infer({"feats": x[i:i + 1], "lengths": n[i:i + 1]}, share_inputs=True))
        else:  # throughput hint: the requests run in parallel on the plugin's streams
            def done(req, i):
                parts[i] = self._outputs(req.results)

            queue.set_callback(done)
            for i in range(B):
                # shared, not copied: x and n stay alive until wait_all()
                queue.start_async({"feats": x[i:i + 1], "lengths": n[i:i + 1]}, i, share_inputs=True)
            queue.wait_all()
        missing = [i for i, p in enumerate(parts) if p is None]
        if missing:
            raise BackendError(f"openvino: no result for batch entries {missing}")
        return {k: torch.from_numpy(np.concatenate([p[k] for p in parts], axis=0)) for k in OUTPUT_NAMES}

    def profile(self, feats: torch.Tensor, lengths: torch.Tensor, repeat: int = 3) -> list[dict]:
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
        self.check_inputs(feats, lengths)
        if repeat < 1:
            raise BackendError(f"repeat must be >= 1, got {repeat}")
        layout, x = self._feed(feats)
        n = np.ascontiguousarray(lengths.cpu().numpy(), dtype=np.int64)
        m = self._shaped_model(*feats.shape, layout)
        compiled = self.core.compile_model(m, "CPU", {**self.config, "PERF_COUNT": True})
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

    def describe(self) -> str:
        return json.dumps({"precision": self.precision_used, "hint": self.hint, "split_batch": self.split_batch,
                           **self.config})
