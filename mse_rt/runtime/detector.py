"""The one user-facing API over interchangeable backends.

    det = Detector.from_checkpoint("config.yaml", "ckpt.pth.tar", backend="eager", device="cpu")
    r = det.detect(feats, fps=30.0)          # feats (T, C) time-first -> DetectionResult (seconds)
    rs = det.detect_batch([f1, f2, f3], fps=30.0)

Pipeline per call: input checks -> group videos by the reference padded length (videos share
a forward pass only when they share it, docs/spec/padding.md) -> backend forward -> batched decode
(grid steps) -> per-video NMS -> seconds.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..config import fpn_strides, load_config
from ..errors import BackendError, InputError, ModelFileError
from ..io.results import DetectionResult, check_unique_ids
from ..model import build_model
from ..model.checkpoint import file_sha256, load_checkpoint
from ..model.detector_graph import level_lengths
from ..pipeline.candidates import Candidates
from ..pipeline.decode import decode_dense
from ..pipeline.inputs import as_video_list, check_duration, check_features, check_fps, check_head_outputs, per_video
from ..pipeline.nms import nms_video
from ..pipeline.padding import pad_batch, pad_policy_length
from ..pipeline.segments import to_seconds
from ..version import __version__
from .backends import (
    BACKENDS,
    Backend,
    EagerBackend,
    onnxruntime_backend,
    openvino_backend,
    tensorrt_backend,
    triton_backend,
)
from .cache import cached, export_cache_dir, onnx_entry_expect, onnx_entry_key
from .options import check_backend_options


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def choose_nms_impl(nms_impl: str, backend: Backend) -> str:
    """Resolve ``nms_impl``: "auto" is the batched Triton GPU NMS for a backend whose outputs
    live on a CUDA device when Triton is installed, the C++ NMS otherwise. An explicit "gpu"
    without Triton, or for a CPU backend, is an error (not a silent fallback)."""
    if nms_impl not in ("auto", "native", "torch", "gpu"):
        raise BackendError(f"unknown nms_impl {nms_impl!r}; use 'auto', 'native', 'torch' or 'gpu'")
    if nms_impl == "auto":
        # the triton backend has Triton by construction (and runs its kernels wherever it runs,
        # the CPU interpreter included); TensorRT's outputs are on the GPU, Triton may be absent
        if backend.name == "triton" or (backend.name == "tensorrt" and _triton_importable()):
            return "gpu"
        return "native"
    if nms_impl == "gpu":
        if not _triton_importable():
            raise BackendError("nms_impl='gpu' needs Triton: pip install 'mse-rt[triton]' (or use nms_impl='native')")
        if backend.device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
            raise BackendError(f"nms_impl='gpu' needs a backend on a CUDA device; the {backend.name} backend runs on "
                               f"{backend.device}")
    return nms_impl


class Detector:
    """Detects actions in pre-extracted clip features with any backend.

    Parameters: ``cfg`` (a config dict from :func:`mse_rt.load_config`), ``backend`` (a
    :class:`Backend`), ``nms_impl`` ("native" C++, "torch" reference, "gpu" batched Triton NMS on
    the backend's device, or "auto": gpu for the triton backend, native otherwise), ``max_batch``
    (videos per forward pass; memory grows with B * T^2 through attention).
    """

    def __init__(self, cfg: dict, backend: Backend, nms_impl: str = "auto", max_batch: int = 8) -> None:
        nms_impl = choose_nms_impl(nms_impl, backend)
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.cfg = cfg
        self.backend = backend
        self.nms_impl = nms_impl
        self.max_batch = max_batch
        self.strides = fpn_strides(cfg)

    @classmethod
    def from_checkpoint(cls, config_path: str | Path, ckpt_path: str | Path, backend: str = "eager",
                        device: str = "cpu", backend_options: dict | None = None, cache_dir: str | Path | None = None,
                        sha256: str | None = None, allow_unverified: bool = False, **kwargs) -> Detector:
        """Build from a reference YAML config and checkpoint. ``backend``: one of ``BACKENDS``.

        Non-eager backends export the model first, into ``cache_dir`` (default
        ``$MSE_RT_CACHE`` or ``~/.cache/mse_rt``), keyed by checkpoint hash, config and version,
        so the export runs once (OpenVINO int8 keeps its quantized IR there too, keyed also by the
        recipe and the calibration files' content, so it calibrates once; OpenVINO's compiled
        blobs go to ``openvino_blobs`` there unless ``backend_options`` sets ``cache_dir``); an
        entry whose recorded checkpoint / config / version differ (a foreign file in its place) is
        rebuilt with a warning. ``backend_options`` go to the
        backend (e.g. ONNX Runtime ``providers``, ``intra_op_threads``, ``graph_optimization``).
        ``sha256`` / ``allow_unverified``: the checkpoint's integrity rule, see
        :func:`mse_rt.model.checkpoint.load_checkpoint` (a legacy non-zip checkpoint needs one).
        """
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        check_backend_options(cls, backend, backend_options)
        cfg = load_config(config_path)
        model = build_model(cfg)
        load_checkpoint(model, ckpt_path, sha256=sha256, allow_unverified=allow_unverified)
        if backend == "eager":
            return cls.from_model(cfg, model, device=device, **kwargs)
        if backend == "triton":
            return cls(cfg, triton_backend(cfg, model, device=device, **(backend_options or {})), **kwargs)
        ckpt_sha = file_sha256(ckpt_path)
        key = onnx_entry_key(ckpt_sha, cfg)
        expect = onnx_entry_expect(ckpt_sha, cfg)  # another valid mse_rt model in the entry's place is foreign
        cache = export_cache_dir(cache_dir)
        opts = dict(backend_options or {})
        if backend == "tensorrt":  # pragma: no cover - needs TensorRT and a GPU
            from ..export import build_engine, export_onnx
            from ..export.tensorrt import gpu_identity

            fp16 = opts.pop("fp16", True)
            max_batch = opts.pop("max_batch", 8)
            tag = hashlib.sha256(f"{key}|{fp16}|{max_batch}|{gpu_identity()}".encode()).hexdigest()[:24]

            def build_trt(engine: Path) -> None:
                onnx_path = export_onnx(copy.deepcopy(model), cache / "onnx" / f"{key}_{'fp16' if fp16 else 'fp32'}.onnx",
                                        precision="fp16" if fp16 else "fp32")
                build_engine(onnx_path, engine, fp16=fp16, max_batch=max_batch)

            return cached(cache / "engines" / f"{tag}.engine", build_trt,
                           lambda p: cls.from_engine(p, **opts, **kwargs))

        def build_onnx(path: Path) -> None:
            from ..export import export_onnx

            export_onnx(model, path, checkpoint_sha256=ckpt_sha)

        if backend == "openvino":
            # OpenVINO's compiled-blob cache beside the exports: a later process skips compiling
            opts.setdefault("cache_dir", cache / "openvino_blobs")
            if opts.get("precision") == "int8":
                return cls._openvino_int8_cached(cache, ckpt_sha, cfg, opts, kwargs,
                                                 lambda: cached(cache / "onnx" / f"{key}.onnx", build_onnx, lambda p: p,
                                                                expect=expect))
            return cached(cache / "onnx" / f"{key}.onnx", build_onnx, lambda p: cls.from_openvino(p, **opts, **kwargs),
                          expect=expect)
        return cached(cache / "onnx" / f"{key}.onnx", build_onnx, lambda p: cls.from_onnx(p, **opts, **kwargs),
                      expect=expect)

    @classmethod
    def _openvino_int8_cached(cls, cache: Path, ckpt_sha: str, cfg: dict, opts: dict, kwargs: dict,
                              onnx_entry) -> Detector:
        """OpenVINO int8 from a checkpoint: the quantized IR is kept in the export cache
        (``openvino/KEY.xml`` + ``.bin``), keyed by checkpoint, config, version, recipe and the
        calibration files' content (:func:`mse_rt.export.openvino.ir_cache_key`); a later
        construction loads it without calibrating. ``onnx_entry()``: the cached fp32 ONNX path."""
        from ..config import config_to_json
        from ..export.openvino import ir_cache_key, quantize_openvino
        from .backends.openvino.ir import read_ir_meta
        from .backends.openvino.loader import int8_support

        opts = dict(opts)
        calib = opts.pop("calib", None)
        calib_videos = opts.pop("calib_videos", 32)
        bias_correction = opts.pop("bias_correction", "fast")
        runnable, _ = int8_support()
        if calib is None or not runnable:  # the backend's own error, or its float fallback (allow_fallback)
            return cls.from_openvino(onnx_entry(), calib=calib, calib_videos=calib_videos,
                                     bias_correction=bias_correction, **opts, **kwargs)
        opts.pop("precision")
        opts.pop("allow_fallback", None)
        cfg_json = config_to_json(cfg)
        tag = ir_cache_key(ckpt_sha, cfg_json, "int8", calib, calib_videos, bias_correction)

        def build(path: Path) -> None:
            quantize_openvino(onnx_entry(), path, calib, "int8", calib_videos, bias_correction)

        def load(path: Path) -> Detector:
            meta = read_ir_meta(path)
            if (meta.get("checkpoint_sha256"), meta.get("config"), meta.get("version")) != (ckpt_sha, cfg_json,
                                                                                             __version__):
                raise ModelFileError(f"{path} is not the int8 model of the checkpoint / config / version asked for "
                                     "(a foreign file in the cache)")
            return cls.from_openvino(path, **opts, **kwargs)

        return cached(cache / "openvino" / f"{tag}.xml", build, load)

    @classmethod
    def from_onnx(cls, path: str | Path, providers: list | None = None, intra_op_threads: int | None = None,
                  inter_op_threads: int | None = None, graph_optimization: str = "all",
                  allow_slow_int8: bool = False, allow_unverified: bool = False, **kwargs) -> Detector:
        """Run an exported ONNX graph with ONNX Runtime; the config comes from the file's metadata.
        An int8 graph on a CPU without int8 dot-product instructions (VNNI) raises a
        :class:`BackendError` unless ``allow_slow_int8=True``. The file's integrity checksum is
        verified; a file without one raises :class:`~mse_rt.errors.ModelFileError` unless
        ``allow_unverified=True`` (:mod:`mse_rt.io.integrity`)."""
        backend = onnxruntime_backend(path, providers=providers, intra_op_threads=intra_op_threads,
                                      inter_op_threads=inter_op_threads, graph_optimization=graph_optimization,
                                      allow_slow_int8=allow_slow_int8, allow_unverified=allow_unverified)
        return cls(backend.cfg, backend, **kwargs)

    @classmethod
    def from_openvino(cls, path: str | Path, precision: str | None = None, hint: str = "latency",
                      threads: int | None = None, calib=None, calib_videos: int = 32, allow_fallback: bool = False,
                      max_compiled: int = 8, cache_dir: str | Path | bool | None = None, split_batch: bool = True,
                      bias_correction: str = "fast", allow_slow_int8: bool = False, allow_unverified: bool = False,
                      **kwargs) -> Detector:
        """Run an exported fp32 ONNX graph with OpenVINO (CPU) in fp32, bf16 or int8 (NNCF PTQ
        calibrated on the first ``calib_videos`` of the ``calib`` feature files), or a saved mse_rt
        OpenVINO IR (``.xml``, e.g. an int8 model from ``mse-rt quantize --engine openvino``: no
        calibration). ``cache_dir``: OpenVINO's compiled-blob cache (default: under the mse_rt export
        cache; False: off). Integrity: checksums verified, a file without one refused unless
        ``allow_unverified``. See :mod:`mse_rt.runtime.backends.openvino`."""
        backend = openvino_backend(path, precision=precision, hint=hint, threads=threads, calib=calib,
                                   calib_videos=calib_videos, allow_fallback=allow_fallback, max_compiled=max_compiled,
                                   cache_dir=cache_dir, split_batch=split_batch, bias_correction=bias_correction,
                                   allow_slow_int8=allow_slow_int8, allow_unverified=allow_unverified)
        return cls(backend.cfg, backend, **kwargs)

    @classmethod
    def from_engine(cls, path: str | Path, cuda_graph: bool = False, allow_unverified: bool = False,
                    **kwargs) -> Detector:
        """Run an mse_rt TensorRT engine file; the config comes from its header. An engine file
        always carries its plan's sha256 (written by mse_rt), so ``allow_unverified`` (accepted for
        :meth:`from_file`'s sake) relaxes nothing: a damaged plan is always refused."""
        backend = tensorrt_backend(path, cuda_graph=cuda_graph)
        return cls(backend.cfg, backend, **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, allow_slow_int8: bool = False, **kwargs) -> Detector:
        """A Detector for a deployable model file, chosen by its suffix: ``.onnx`` (ONNX Runtime),
        ``.xml`` (an mse_rt OpenVINO IR with its ``.bin``: OpenVINO), ``.engine`` (TensorRT);
        ``allow_slow_int8``: see :meth:`from_onnx`."""
        suffix = Path(path).suffix
        if suffix == ".onnx":
            return cls.from_onnx(path, allow_slow_int8=allow_slow_int8, **kwargs)
        if suffix == ".xml":
            return cls.from_openvino(path, allow_slow_int8=allow_slow_int8, **kwargs)
        if suffix == ".engine":
            return cls.from_engine(path, **kwargs)
        raise BackendError(f"cannot tell the model format of {path}: expected a .onnx, .xml (OpenVINO IR) or "
                           ".engine file")

    @classmethod
    def from_model(cls, cfg: dict, model: torch.nn.Module, device: str = "cpu", **kwargs) -> Detector:
        """Wrap an already built (and loaded) model in the eager backend."""
        return cls(cfg, EagerBackend(cfg, model, device), **kwargs)

    # ------------------------------------------------------------------ public API
    def detect(self, feats: np.ndarray | torch.Tensor, fps: float | None = None, duration: float | None = None,
               video_id: str = "video", keep_candidates: bool = False) -> DetectionResult:
        """Detect actions in one video.

        ``feats``: (T, C) features, time first. ``fps``: frames per second of the source video
        (default: ``dataset.default_fps``). ``duration``: seconds; None means
        ``(T * feat_stride + num_frames) / fps``. Returns segments in seconds.
        """
        return self.detect_batch([feats], fps=fps, durations=[duration], video_ids=[video_id],
                                 keep_candidates=keep_candidates)[0]

    def detect_batch(self, videos: Iterable, fps: float | Sequence[float] | None = None,
                     durations: Sequence[float | None] | None = None, video_ids: Sequence[str] | None = None,
                     keep_candidates: bool = False) -> list[DetectionResult]:
        """Detect actions in many videos; results come back in input order.

        ``videos``: any iterable of (T, C) arrays / tensors (a generator is read once, into a
        list). ``fps``: one number for all, or one per video, in
        :data:`~mse_rt.config.schema.FPS_RANGE`. Videos with the same reference padded length
        share forward passes (up to ``max_batch``); results equal the one-video results. A
        network output that is not finite raises :class:`InputError` naming the video.
        """
        videos = as_video_list(videos, "videos")
        n = len(videos)
        if n == 0:
            return []
        fps_list = per_video(fps, n, "fps")
        dur_list = per_video(durations, n, "durations") if durations is not None else [None] * n
        ids = as_video_list(video_ids, "video_ids") if video_ids is not None else [f"video_{i}" for i in range(n)]
        if len(ids) != n:
            raise InputError(f"video_ids has {len(ids)} entries for {n} videos")
        ids = check_unique_ids(ids)
        d = self.cfg["dataset"]
        feats = [check_features(v, self.cfg, name=f"video {ids[i]!r}") for i, v in enumerate(videos)]
        fps_vals = []
        for i, f in enumerate(fps_list):
            f = f if f is not None else d["default_fps"]
            if f is None:
                raise InputError(f"video {ids[i]!r}: fps is required (the config has no dataset.default_fps)")
            fps_vals.append(check_fps(f, f"video {ids[i]!r}: fps"))
        for i, dur in enumerate(dur_list):
            if dur is not None:
                dur_list[i] = check_duration(dur, feats[i].shape[1], fps_vals[i], d, f"video {ids[i]!r}")

        results: list[DetectionResult | None] = [None] * n
        for decoded in self._decoded_batches(feats, [f"video {v!r}" for v in ids]):
            nmsed = self.nms([c for _, c, _ in decoded])
            for (i, cand, timing), (segs, scores, labels, t_nms) in zip(decoded, nmsed):
                fps_i = fps_vals[i]
                dur = dur_list[i]
                if dur is None:
                    dur = (feats[i].shape[1] * d["feat_stride"] + d["num_frames"]) / fps_i
                timing["nms"] = t_nms
                if segs.shape[0] > 0:
                    segs = to_seconds(segs, fps_i, d["feat_stride"], d["num_frames"], float(dur))
                results[i] = DetectionResult(
                    video_id=ids[i], segments=segs.numpy().astype(np.float32),
                    scores=scores.numpy().astype(np.float32), labels=labels.numpy().astype(np.int64),
                    fps=fps_i, duration=float(dur), timings=timing,
                    candidates=cand.cpu() if keep_candidates else None,
                )
        return results  # type: ignore[return-value]

    def detect_candidates(self, videos: Iterable) -> list[Candidates]:
        """Pre-NMS candidates of each video (segments in feature-grid steps), batched like
        :meth:`detect_batch`; for callers that run their own NMS (streaming)."""
        feats = [check_features(v, self.cfg, name=f"video {i}") for i, v in enumerate(as_video_list(videos, "videos"))]
        out: list[Candidates | None] = [None] * len(feats)
        for decoded in self._decoded_batches(feats, [f"video {i}" for i in range(len(feats))]):
            for i, cand, _ in decoded:
                out[i] = cand.cpu()
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ internals
    def _decoded_batches(self, feats: list[torch.Tensor], names: list[str]):
        """Yield, per forward pass, [(video index, candidates, timings)]: videos grouped by the
        reference padded length (docs/spec/padding.md), at most ``max_batch`` per pass.
        ``names``: how errors name each video."""
        groups: dict[int, list[int]] = defaultdict(list)
        for i, f in enumerate(feats):
            groups[pad_policy_length(f.shape[1], self.cfg)].append(i)
        for padded_len, members in groups.items():
            for start in range(0, len(members), self.max_batch):
                chunk = members[start:start + self.max_batch]
                yield list(self._run_chunk([feats[i] for i in chunk], padded_len, chunk, [names[i] for i in chunk]))

    def nms(self, cands: list[Candidates]) -> list[tuple]:
        """The configured NMS of several videos' candidates (grid steps) -> per video
        (segs, scores, labels) on the CPU plus the seconds spent, sorted by score."""
        t0 = time.perf_counter()
        if self.nms_impl == "gpu":
            from ..kernels.nms_gpu import batched_nms_gpu

            out = batched_nms_gpu([c.segments for c in cands], [c.scores for c in cands], [c.labels for c in cands],
                                  self.cfg["test_cfg"])
            share = (time.perf_counter() - t0) / max(1, len(cands))
            return [(s.cpu(), p.cpu(), lab.cpu(), share) for s, p, lab in out]
        res = []
        for c in cands:
            t1 = time.perf_counter()
            res.append((*nms_video(c.segments, c.scores, c.labels, self.cfg["test_cfg"], impl=self.nms_impl),
                        time.perf_counter() - t1))
        return res

    def _run_chunk(self, feats: list[torch.Tensor], padded_len: int, idx: list[int], names: list[str]):
        x, lengths = pad_batch(feats, padded_len, time_first=getattr(self.backend, "prefers_time_first", False))
        cuda = self.backend.device.type == "cuda"
        t0 = time.perf_counter()
        heads = self.backend.infer(x, lengths)
        if cuda:  # GPU work is asynchronous: without the sync "forward" would time only the launches
            torch.cuda.synchronize(self.backend.device)
        t1 = time.perf_counter()
        check_head_outputs(heads, names)
        cands: list[Candidates] = decode_dense(heads["cls_prob"], heads["seg_start"], heads["seg_end"],
                                               level_lengths(padded_len, self.strides), self.cfg["test_cfg"])
        if cuda:
            torch.cuda.synchronize(self.backend.device)
        t2 = time.perf_counter()
        share = len(feats)
        for i, c in zip(idx, cands):
            if self.nms_impl != "gpu":
                c = c.cpu()
            yield i, c, {"forward": (t1 - t0) / share, "decode": (t2 - t1) / share}
