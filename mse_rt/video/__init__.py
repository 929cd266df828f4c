"""Video front end: frame sources, clip sampling, backbones (frames -> clip features), synthetic videos.

    from mse_rt.video import ClipSpec, iter_clips, batch_clips, load_backbone
    bb = load_backbone("i3d-rgb")                           # eager fp32; backend="openvino", precision="bf16", ...
    spec = bb.clip_spec(fps=30.0, stride=4)                 # 16 frames of 224 x 224, as the backbone expects
    for batch in batch_clips(iter_clips("match.mp4", spec), 8):
        feats = bb.features(batch.frames)                   # (N, 1024) float32, one row per clip

The contract is docs/spec/video.md. Names are imported lazily on first use, so ``import
mse_rt.video`` stays cheap and never imports PyAV, torch or a backend package.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "sources": ("DEFAULT_MAX_PIXELS", "DEVICE_FORMATS", "LIVE_TIMEOUT_S", "FrameSource", "SourceInfo", "open_source"),
    "clips": ("Clip", "ClipBatch", "ClipSampler", "ClipSpec", "batch_clips", "iter_clips", "preprocess_frames"),
    "resize": ("center_crop", "resize_frames", "short_side_size"),
    "i3d": ("FEATURE_DIM", "NUM_CLASSES", "InceptionI3d", "logits_defined", "mixed_5c_size"),
    "i3d_fast": ("FastInceptionI3d",),
    "weights": ("load_i3d", "load_i3d_state_dict"),
    "backbone": ("Backbone",),
    "registry": ("BACKBONES", "load_backbone", "register_backbone"),
    "export": ("export_backbone_onnx", "read_backbone_onnx"),
    "render": ("VideoSynthSpec", "render_dataset", "render_frames", "render_video"),
    "pipeline": ("VideoDetector", "VideoFeatures", "extract_video_features"),
    "live": ("VideoStreamPool",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_ERRORS = ("SourceError", "SourceStalled")

__all__ = sorted([*_WHERE, *_ERRORS])


def __getattr__(name: str):
    if name in _ERRORS:
        from .. import errors

        return getattr(errors, name)
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mse_rt.video' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
