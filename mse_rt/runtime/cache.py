"""The export cache: models exported from a checkpoint once, reused by later Detectors.

Entries live in ``cache_dir``, else ``$MSE_RT_CACHE``, else ``~/.cache/mse_rt``; each is written
atomically and carries its own checksum, so a damaged entry is detected on load, removed and
rebuilt (once).
"""

from __future__ import annotations

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


def cached(path: Path, build, load):
    """Load the cache entry ``path`` (building it first when absent); a damaged entry
    (:class:`ModelFileError`: checksum mismatch, unreadable) is removed and rebuilt once."""
    if path.is_file():
        try:
            return load(path)
        except ModelFileError as exc:
            warnings.warn(f"damaged export cache entry {path} ({exc}); rebuilding it", RuntimeWarning, stacklevel=3)
            path.unlink(missing_ok=True)
    build(path)
    return load(path)
