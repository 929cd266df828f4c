"""The export cache: models exported from a checkpoint once, reused by later Detectors.

Entries live in ``cache_dir``, else ``$MSE_RT_CACHE``, else ``~/.cache/mse_rt``; each is written
atomically and carries its own checksum, and ONNX entries record the sha256 of the checkpoint and
the config they were exported from: a damaged entry, or a foreign one (another model copied or
linked in its place), is detected on load, removed and rebuilt (once), with a warning naming it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

from ..errors import ModelFileError, OutputError
from ..io.files import check_output_path


def export_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder of exported models: ``cache_dir``, else ``$MSE_RT_CACHE``, else ``~/.cache/mse_rt``.

    An unwritable default falls back to a folder in the system temp dir with a warning that
    names ``MSE_RT_CACHE``; an unwritable folder the caller chose raises :class:`OutputError`.
    """
    chosen = cache_dir or os.environ.get("MSE_RT_CACHE")
    path = Path(chosen) if chosen else Path.home() / ".cache" / "mse_rt"
    try:
        check_output_path(path / ".probe", what="export cache")
        return path
    except OutputError as exc:
        if chosen:
            raise OutputError(f"{exc} (export cache from {'cache_dir' if cache_dir else 'MSE_RT_CACHE'}); "
                              "choose a writable folder") from exc
        fallback = Path(tempfile.gettempdir()) / f"mse_rt_cache_{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        warnings.warn(f"export cache {path} is not writable ({exc}); using {fallback} instead "
                      "(set MSE_RT_CACHE to choose the folder)", RuntimeWarning, stacklevel=3)
        check_output_path(fallback / ".probe", what="export cache")
        return fallback


def onnx_entry_key(ckpt_sha256: str, cfg: dict) -> str:
    """Cache key of a checkpoint's ONNX export: the checkpoint file's sha256, the config and the
    mse_rt version (24 hex digits); the entry is ``cache_dir / "onnx" / f"{key}.onnx"``."""
    from ..config import config_to_json
    from ..version import __version__

    return hashlib.sha256(f"{ckpt_sha256}|{config_to_json(cfg)}|{__version__}".encode()).hexdigest()[:24]


def onnx_entry_expect(ckpt_sha256: str, cfg: dict) -> dict[str, str]:
    """The metadata an ONNX cache entry must carry (:func:`check_entry_metadata`)."""
    from ..config import config_to_json
    from ..version import __version__

    return {"mse_rt.checkpoint_sha256": ckpt_sha256, "mse_rt.config": config_to_json(cfg), "mse_rt.version": __version__}


def check_entry_metadata(path: Path, expect: dict[str, str]) -> None:
    """:class:`ModelFileError` naming ``path`` unless its mse_rt ONNX metadata holds every
    ``expect`` key with that value (e.g. ``mse_rt.checkpoint_sha256``): a valid mse_rt model of
    another checkpoint or config put in the cache's place (copied, or a symlink) is foreign."""
    from ..export.onnx import read_onnx_metadata

    try:
        meta = read_onnx_metadata(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged entry
        raise ModelFileError(f"{path} cannot be read as ONNX: {type(exc).__name__}: {exc}") from exc
    for key, want in expect.items():
        got = meta.get(key)
        if got != want:
            shown = "missing" if not got else f"{got[:16]}..." if len(got) > 24 else repr(got)
            raise ModelFileError(f"{path} is not the export of the model asked for: its {key} is {shown}, expected "
                                 f"{want[:16] + '...' if len(want) > 24 else repr(want)} (a foreign file in the cache)")


def cached(path: Path, build, load, expect: dict[str, str] | None = None):
    """Load the cache entry ``path`` (building it first when absent); a damaged entry
    (:class:`ModelFileError`: checksum mismatch, unreadable) or a foreign one (its metadata
    differs from ``expect``, see :func:`check_entry_metadata`) is removed and rebuilt once, with a
    warning naming the cache file."""
    if path.is_file():
        try:
            if expect:
                check_entry_metadata(path, expect)
            return load(path)
        except ModelFileError as exc:
            warnings.warn(f"damaged or foreign export cache entry {path} ({exc}); rebuilding it", RuntimeWarning,
                          stacklevel=3)
            path.unlink(missing_ok=True)
    elif path.is_symlink():  # a dangling link: the build's atomic rename replaces it
        path.unlink(missing_ok=True)
    build(path)
    try:
        if expect:
            check_entry_metadata(path, expect)
        return load(path)
    except ModelFileError as exc:
        raise ModelFileError(f"export cache entry {path}, just rebuilt, cannot be loaded: {exc}") from exc
