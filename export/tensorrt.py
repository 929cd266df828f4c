"""TensorRT engines from the mse_rt ONNX graph, and the engine file format.

    from mse_rt.export import build_engine
    build_engine("model_fp16.onnx", "model.engine", fp16=True)       # or: mse-rt export --format engine

Written for TensorRT 10 and 11 with the named-tensor API only (no bindings, no implicit batch):
``build_serialized_network`` to build, ``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3`` to run. fp16: TensorRT 11 removed the weak-typing FP16 builder flag, so an
fp16 engine is a *strongly typed* network built from the fp16 ONNX graph
(``export_onnx(..., precision="fp16")``: half weights and activations, float32 inputs / outputs,
float32 softmax, normalisation statistics and decode). TensorRT 10 builds the same way when the
graph is fp16, and falls back to the FP16 builder flag for an fp32 graph.

Engine file (little-endian)::

    8 bytes   magic b"MSERTENG"
    u32       format version (1)
    u64       N, then N bytes of UTF-8 JSON metadata: config, profiles, precision, TensorRT
              version, GPU name and compute capability, ONNX sha256, mse_rt version, I/O names
    u64       M, then M bytes: the serialized TensorRT plan
    32 bytes  sha256 of the plan

so ``Detector.from_engine(path)`` needs nothing else, and a plan built by another TensorRT
version or for another GPU is refused with a message that says to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
from pathlib import Path

from mse_rt.errors import BackendError, ExportError, ModelFileError
from mse_rt.io.files import atomic_output, atomic_write_bytes
from mse_rt.model.detector_graph import INPUT_NAMES, OUTPUT_NAMES
from mse_rt.pipeline.padding import max_video_length, pad_policy_length
from mse_rt.version import __version__

log = logging.getLogger("mse_rt.export")

ENGINE_MAGIC = b"MSERTENG"
ENGINE_FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sIQ")


def write_engine_file(path: str | Path, plan: bytes, meta: dict) -> Path:
    """Write header + metadata + plan + checksum (see the module docstring)."""
    path = Path(path)
    blob = json.dumps(meta, sort_keys=True).encode()
    with atomic_output(path, what="engine file") as tmp, open(tmp, "wb") as f:
        f.write(_HEAD.pack(ENGINE_MAGIC, ENGINE_FORMAT_VERSION, len(blob)))
        f.write(blob)
        f.write(struct.pack("<Q", len(plan)))
        f.write(plan)
        f.write(hashlib.sha256(plan).digest())
    return path


def read_engine_file(path: str | Path) -> tuple[dict, bytes]:
    """(metadata, plan) of an mse_rt engine file; BackendError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"engine file not found: {path}")
    data = path.read_bytes()
    if len(data) < _HEAD.size or data[:8] != ENGINE_MAGIC:
        raise ModelFileError(f"{path} is not an mse_rt engine file (no {ENGINE_MAGIC!r} header); build one with "
                           "`mse-rt export --format engine`")
    magic, version, n = _HEAD.unpack_from(data, 0)
    if version != ENGINE_FORMAT_VERSION:
        raise ModelFileError(f"{path}: engine file format {version}, this mse_rt reads {ENGINE_FORMAT_VERSION}; rebuild it")
    pos = _HEAD.size
    if len(data) < pos + n + 8:
        raise ModelFileError(f"{path}: truncated engine file (metadata)")
    try:
        meta = json.loads(data[pos:pos + n])
    except ValueError as exc:
        raise ModelFileError(f"{path}: corrupt engine metadata: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: corrupt engine metadata: expected a JSON object, got {type(meta).__name__}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("profiles"), (dict, list)):
        raise ModelFileError(f"{path}: corrupt engine metadata: no config / profiles entries; rebuild the engine")
    pos += n
    (m,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    if len(data) != pos + m + 32:
        raise ModelFileError(f"{path}: truncated or padded engine file (plan of {m} bytes expected)")
    plan = data[pos:pos + m]
    if hashlib.sha256(plan).digest() != data[pos + m:]:
        raise ModelFileError(f"{path}: engine plan checksum mismatch (corrupt file)")
    return meta, plan


def engine_profiles(cfg: dict, max_batch: int = 8, long_batch: int = 1) -> list[dict[str, dict[str, list[int]]]]:
    """Optimisation profiles of an engine for this config: per profile, the shapes of ``feats``
    (B, C_in, T) and ``lengths`` (B,) as ``{"min", "opt", "max"}``.

    Profile 0 serves batches: B 1..``max_batch``, T from the top pyramid stride (the shortest
    length the network is defined for) to max_seq_len, optimised at (1, max_seq_len); every video
    up to max_seq_len is padded to exactly max_seq_len, so this is the common case. When the point
    buffer allows longer videos, profile 1 serves them: B 1..``long_batch``, T from the first
    padded length beyond max_seq_len to max_seq_len * max_buffer_len_factor. One profile for both
    would size activations for B = max_batch at the longest T: with the graph's explicit
    (B, heads, T, T) attention that is 8 x 4 x 13824^2 x 4 bytes = 24 GB per score tensor at
    THUMOS size, against 0.7 GB (profile 0) and 3 GB (profile 1) split.
    """
    if max_batch < 1 or long_batch < 1:
        raise ExportError(f"max_batch and long_batch must be >= 1, got {max_batch} and {long_batch}")
    m = cfg["model"]
    c = m["input_dim"]
    L = m["max_seq_len"]
    t_min = m["scale_factor"] ** m["backbone_arch"][2]
    out = [{
        "feats": {"min": [1, c, t_min], "opt": [1, c, L], "max": [max_batch, c, L]},
        "lengths": {"min": [1], "opt": [1], "max": [max_batch]},
    }]
    longest = max_video_length(cfg)
    if longest > L:
        lo = pad_policy_length(L + 1, cfg)
        hi = pad_policy_length(longest, cfg)
        out.append({
            "feats": {"min": [1, c, lo], "opt": [1, c, hi], "max": [long_batch, c, hi]},
            "lengths": {"min": [1], "opt": [1], "max": [long_batch]},
        })
    return out


def profile_for(profiles: list[dict], batch: int, length: int) -> int | None:
    """Index of the first profile whose ``feats`` range holds (batch, length), or None."""
    for i, p in enumerate(profiles):
        lo, hi = p["feats"]["min"], p["feats"]["max"]
        if lo[0] <= batch <= hi[0] and lo[2] <= length <= hi[2]:
            return i
    return None


def normalize_profiles(profiles) -> list[dict]:
    """Engine files of format 1 written before the split hold one profile as a dict."""
    return [profiles] if isinstance(profiles, dict) else list(profiles)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError("TensorRT is not installed: pip install tensorrt (needs an NVIDIA GPU and driver)") from exc
    return trt


def gpu_identity() -> dict:
    import torch

    if not torch.cuda.is_available():
        raise BackendError("TensorRT engines need a CUDA GPU; none is available here")
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": list(torch.cuda.get_device_capability())}


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, fp16: bool = True, max_batch: int = 8,
                 min_shape=None, opt_shape=None, max_shape=None, workspace: int = 4 << 30,
                 timing_cache: str | Path | None = None) -> Path:  # pragma: no cover - needs TensorRT + GPU
    """Build a TensorRT engine from an mse_rt ONNX graph and write the engine file.

    Shapes of ``feats`` default to the profiles of :func:`engine_profiles` (``lengths`` follows
    the batch range); ``min_shape`` / ``opt_shape`` / ``max_shape`` replace them by one profile.
    ``workspace`` bytes; ``timing_cache`` path read if present and written after the build.
    Parser errors are listed one by one in the ExportError.
    """
    trt = import_tensorrt()
    from .onnx import read_onnx_metadata

    onnx_path = Path(onnx_path)
    meta_onnx = read_onnx_metadata(onnx_path)
    if "mse_rt.config" not in meta_onnx:
        raise ExportError(f"{onnx_path} is not an mse_rt ONNX graph (no metadata); export it with mse-rt export")
    from mse_rt.config import config_from_json

    cfg = config_from_json(meta_onnx["mse_rt.config"])
    graph_precision = meta_onnx.get("mse_rt.precision", "fp32")
    major = int(trt.__version__.split(".")[0])
    strongly_typed = graph_precision == "fp16"
    if fp16 and not strongly_typed and major >= 11:
        raise ExportError("TensorRT 11 builds fp16 engines only from an fp16 graph: export with precision='fp16' "
                          "(mse-rt export --format onnx --precision fp16)")
    if not fp16 and strongly_typed:
        raise ExportError(f"{onnx_path} is an fp16 graph; build it with fp16=True or export an fp32 graph")
    profiles = engine_profiles(cfg, max_batch)
    if min_shape or opt_shape or max_shape:
        first = profiles[0]["feats"]
        fmin, fopt, fmax = (list(min_shape or first["min"]), list(opt_shape or first["opt"]),
                            list(max_shape or first["max"]))
        profiles = [{"feats": {"min": fmin, "opt": fopt, "max": fmax},
                     "lengths": {"min": [fmin[0]], "opt": [fopt[0]], "max": [fmax[0]]}}]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    t0 = time.perf_counter()
    if not parser.parse_from_file(str(onnx_path)):
        errors = [f"  {i}: {parser.get_error(i).desc()} (node {parser.get_error(i).node()})"
                  for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT cannot parse {onnx_path}:\n" + "\n".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if fp16 and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    for prof in profiles:
        profile = builder.create_optimization_profile()
        for name in ("feats", "lengths"):
            profile.set_shape(name, prof[name]["min"], prof[name]["opt"], prof[name]["max"])
        config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        raw = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(raw)
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(cache.serialize())), what="TensorRT timing cache")
    meta = {
        "format": "mse_rt.engine/1", "mse_rt_version": __version__, "tensorrt_version": trt.__version__,
        "config": json.loads(meta_onnx["mse_rt.config"]), "precision": "fp16" if fp16 else "fp32",
        "strongly_typed": strongly_typed, "profiles": profiles,
        "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES),
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(), **gpu_identity(),
    }
    out = write_engine_file(engine_path, bytes(plan), meta)
    log.info("built %s in %.1f s (%s, TensorRT %s, %.1f MB)", out, time.perf_counter() - t0, meta["precision"],
             trt.__version__, out.stat().st_size / 1e6)
    return out


def check_engine_compatible(meta: dict, path: str | Path = "engine") -> None:
    """Refuse an engine built by another TensorRT version or for another GPU (say to rebuild)."""
    trt = import_tensorrt()
    if meta.get("tensorrt_version") != trt.__version__:
        raise BackendError(f"{path} was built with TensorRT {meta.get('tensorrt_version')}, this machine has "
                           f"{trt.__version__}: rebuild it (mse-rt export --format engine)")
    here = gpu_identity()
    if meta.get("gpu") != here["gpu"]:
        raise BackendError(f"{path} was built for {meta.get('gpu')}, this GPU is {here['gpu']}: rebuild it")


def tensorrt_ep_providers(fp16: bool = True, cache_dir: str | Path | None = None, device_id: int = 0) -> list:
    """ONNX Runtime providers using its TensorRT execution provider, falling back to CUDA, then CPU
    (needs onnxruntime-gpu built with TensorRT): pass to ``Detector.from_onnx(path, providers=...)``."""
    trt_opts = {"device_id": device_id, "trt_fp16_enable": bool(fp16)}
    if cache_dir is not None:
        trt_opts.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                         "trt_timing_cache_enable": True})
    return [("TensorrtExecutionProvider", trt_opts), ("CUDAExecutionProvider", {"device_id": device_id}),
            "CPUExecutionProvider"]
