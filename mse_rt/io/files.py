"""Crash-safe output files: every file mse_rt writes goes through :func:`atomic_output`.

A result, export, cache entry, engine or report is written to a temporary file in the target's
own folder, flushed and fsync'ed, given normal permissions (0666 minus the umask, like any file
``open`` creates; ``mkstemp`` alone would leave 0600) and renamed over the target. A full disk,
a crash or Ctrl-C therefore leaves either the previous file or the complete new one, never a
truncated one, and never a stray temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """Fail early, before any work, when ``path`` cannot receive a file.

    Creates missing parent folders, and proves the folder is writable by creating and removing
    a temporary file there. Raises :class:`OutputError` naming the problem.
    """
    path = Path(path)
    os.unlink(_temp_beside(path, what, ".probe"))
    return path


def check_not_an_input(output: str | Path, inputs, what: str = "output") -> None:
    """:class:`OutputError` when ``output`` is one of ``inputs``: the same file under another path,
    through a symbolic or hard link included. Writing it would destroy the input (a feature file,
    a checkpoint, the model being quantized) before or while it is read."""
    out = Path(output)
    if not out.exists():
        return
    for item in inputs:
        p = Path(item)
        try:
            same = p.exists() and os.path.samefile(out, p)
        except OSError:
            continue
        if same:
            shown = f"{p}" if Path(os.path.abspath(p)) == Path(os.path.abspath(out)) else f"{p} (the same file as {out})"
            raise OutputError(f"{what} {out} is one of the inputs: {shown}; choose another output path")


def _temp_beside(path: Path, what: str, suffix: str) -> str:
    """An empty temporary file in ``path``'s folder (created if missing); OutputError otherwise."""
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file name (e.g. {path / 'results.json'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {exc.strerror or exc}") from exc
    return name


@contextlib.contextmanager
def atomic_output(path: str | Path, what: str = "output") -> Iterator[Path]:
    """``with atomic_output(p) as tmp: write(tmp)``: the file appears at ``p`` whole or not at all.

    The body writes to ``tmp`` (same folder, so the final rename is atomic); on success the data
    is fsync'ed, permissions set to 0666 & ~umask and ``tmp`` renamed to ``p``; on any error or
    interrupt ``tmp`` is removed and ``p`` left as it was. OSErrors become :class:`OutputError`.
    """
    path = Path(path)
    tmp = Path(_temp_beside(path, what, ".tmp"))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, what) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, what: str = "output") -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), what)
