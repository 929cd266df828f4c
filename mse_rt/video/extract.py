"""Feature extraction of many videos into a folder: ``DIR/<video_id>.npy`` (T, C) float32, resumable.

    report = extract_to_folder(["a.mp4", "b.mkv"], "feats/", backbone, spec)
    report.written, report.skipped, report.failed      # video ids; failed: [(path, reason)]

What a finished video leaves (both written atomically, the ``.npy`` first):

- ``DIR/<id>.npy``: the (T, C) float32 features, time first (what ``mse-rt detect`` reads);
- ``DIR/<id>.json``, the manifest: ``{"mse_rt_features": 1, "source": {"path", "size", "mtime_ns"},
  "clip_spec": ClipSpec.to_dict(), "backbone": backbone_identity, "shape": [T, C],
  "num_frames": n, "duration_s": n / fps, "npy_bytes": size of the .npy}``.

The manifest is written first, then the ``.npy`` (each atomically): a crash or interrupt between
the two leaves a manifest whose ``.npy`` is missing or does not match it, which a rerun redoes.
An ``<id>.npy`` with no manifest beside it is not extract-features' output (the user's own
features): refused before any work unless ``overwrite``. **Resume rule**: a video is skipped when its manifest reads,
names the same source size and mtime, the same clip spec and backbone identity, and the ``.npy``
has the size and (T, C) float32 header the manifest states. A changed source file (size or mtime)
is extracted again. A manifest of *another clip spec or backbone* is refused before any work
(:class:`~mse_rt.errors.OutputError` naming the file and what differs): one folder holds one
corpus, and silently replacing features of another backbone would mix two. Use another folder,
or remove those files.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MseRtError, OutputError
from ..io.files import atomic_output, atomic_write_text
from .clips import ClipSpec
from .pipeline import backbone_identity, check_backbone_for_spec, extract_video_features

__all__ = ["MANIFEST_FORMAT", "ExtractReport", "check_folder", "extract_to_folder", "is_complete", "manifest_path"]

MANIFEST_FORMAT = 1


@dataclass
class ExtractReport:
    """What :func:`extract_to_folder` did: video ids ``written`` and ``skipped`` (complete from an
    earlier run), ``failed`` as ``(source path, one-line reason)``, ``clips`` run through the backbone."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    clips: int = 0


def manifest_path(npy: str | Path) -> Path:
    """The manifest beside a feature file: ``<id>.json``."""
    return Path(npy).with_suffix(".json")


def _stamp(path: Path) -> dict[str, Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _read_manifest(npy: Path) -> dict | None:
    try:
        m = json.loads(manifest_path(npy).read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("mse_rt_features") == MANIFEST_FORMAT else None


def _identity(spec: ClipSpec, backbone) -> dict[str, Any]:
    return json.loads(json.dumps({"clip_spec": spec.to_dict(), "backbone": backbone_identity(backbone)}))


def _npy_header(npy: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    try:
        with open(npy, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)  # the header only, no data read
    except (OSError, ValueError, EOFError):
        return None
    return tuple(shape), np.dtype(dtype)


def is_complete(npy: Path, source: Path, identity: dict) -> bool:
    """The resume rule (module docstring): ``npy`` is a finished extraction of ``source`` by ``identity``."""
    m = _read_manifest(npy)
    stamp = _stamp(source)
    if m is None or stamp is None:
        return False
    src = m.get("source") or {}
    if {"size": src.get("size"), "mtime_ns": src.get("mtime_ns")} != stamp:
        return False
    if {"clip_spec": m.get("clip_spec"), "backbone": m.get("backbone")} != identity:
        return False
    header = _npy_header(npy)
    try:
        size = os.path.getsize(npy)
    except OSError:
        return False
    return header is not None and list(header[0]) == m.get("shape") and header[1] == np.float32 \
        and size == m.get("npy_bytes")


def check_folder(out_dir: Path, ids: Sequence[str], identity: dict, overwrite: bool = False) -> None:
    """Before any work: no manifest in ``out_dir`` for these ids names another clip spec or backbone,
    and (unless ``overwrite``) no ``<id>.npy`` is there without the manifest extract-features writes
    beside its own files, a file this run would otherwise replace (:class:`OutputError` naming it)."""
    for vid in ids:
        npy = out_dir / f"{vid}.npy"
        m = _read_manifest(npy)
        if m is None:
            if npy.exists() and not overwrite:
                raise OutputError(f"{npy} exists and was not written by extract-features (no {manifest_path(npy).name} "
                                  "beside it): refusing to replace it; choose another output folder, or pass "
                                  "--overwrite (overwrite=True)")
            continue
        for part in ("clip_spec", "backbone"):
            theirs, ours = m.get(part) or {}, identity[part]
            diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            if diff:
                k = diff[0]
                raise OutputError(f"{manifest_path(out_dir / f'{vid}.npy')} was made with another {part.replace('_', ' ')} "
                                  f"({k}={theirs.get(k)!r}, this run {k}={ours.get(k)!r}): one folder holds one "
                                  "corpus; choose another output folder or remove those files")


def extract_to_folder(videos: Sequence[str | Path], out_dir: str | Path, backbone, spec: ClipSpec, *,
                      ids: Sequence[str] | None = None, clip_batch: int = 8,
                      on_clips: Callable[[int], None] | None = None,
                      on_video: Callable[[str, str | None], None] | None = None, overwrite: bool = False,
                      **source_options: Any) -> ExtractReport:
    """Extract every video's features into ``out_dir`` (module docstring), skipping finished ones.

    ``ids``: output names (default: file names without extension; must be unique). A video that
    fails (unreadable, truncated, no video stream, shorter than one clip, a stall, ...) is recorded
    in ``report.failed`` with its reason and the others go on. ``on_clips(n)`` after every backbone
    call, ``on_video(video_id, error_or_None)`` after every video (progress). An ``<id>.npy`` that
    extract-features did not write (no manifest beside it) is refused unless ``overwrite``. A KeyboardInterrupt
    propagates; every file already in ``out_dir`` is whole (atomic writes).

    Raises:
        OutputError: ``out_dir`` cannot be made, holds features of another clip spec / backbone, or
            an output (``<id>.npy`` / ``<id>.json``) is one of the videos (``overwrite`` or not).
        InputError: duplicate ids.
        ConfigError: the backbone does not take the spec's clips.
    """
    from ..io.results import check_unique_ids

    check_backbone_for_spec(backbone, spec)
    videos = [Path(v) for v in videos]
    ids = list(ids) if ids is not None else [v.stem for v in videos]
    check_unique_ids(ids)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from exc
    from ..io.files import check_not_an_input

    # a video named <id>.npy / <id>.json in the output folder is never written over; the videos'
    # inodes are read once (a resumed folder holds every output: a pairwise check would stat
    # 2 x N x N paths)
    inodes = {}
    for v in videos:
        with contextlib.suppress(OSError):
            st = v.stat()
            inodes[(st.st_dev, st.st_ino)] = v
    for vid in ids:
        for out in (out_dir / f"{vid}.npy", manifest_path(out_dir / f"{vid}.npy")):
            try:
                st = out.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in inodes:
                check_not_an_input(out, [inodes[(st.st_dev, st.st_ino)]], what="feature output")
    identity = _identity(spec, backbone)
    check_folder(out_dir, ids, identity, overwrite=overwrite)
    report = ExtractReport()

    def count(n: int) -> None:
        report.clips += n
        if on_clips is not None:
            on_clips(n)

    for video, vid in zip(videos, ids):
        npy = out_dir / f"{vid}.npy"
        if is_complete(npy, video, identity):
            report.skipped.append(vid)
            if on_video is not None:
                on_video(vid, None)
            continue
        stamp = _stamp(video)
        if npy.parent != out_dir:  # --ids relpath: sub-folders
            try:
                npy.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create output folder {npy.parent}: {exc.strerror or exc}") from exc
        try:
            vf = extract_video_features(video, backbone, spec, clip_batch=clip_batch, on_clips=count,
                                        **source_options)
        except MseRtError as exc:
            report.failed.append((str(video), str(exc)))
            if on_video is not None:
                on_video(vid, str(exc))
            continue
        buf = io.BytesIO()
        np.save(buf, vf.features)
        manifest = {"mse_rt_features": MANIFEST_FORMAT,
                    "source": {"path": str(video), **(stamp or {"size": None, "mtime_ns": None})},
                    **identity, "shape": list(vf.features.shape), "num_frames": vf.num_frames,
                    "duration_s": vf.duration_s, "npy_bytes": buf.getbuffer().nbytes}
        # the manifest first: a crash between the two writes leaves a manifest whose .npy is missing or
        # stale (redone by the next run), never an .npy without one (which a run refuses to replace)
        atomic_write_text(manifest_path(npy), json.dumps(manifest, indent=1) + "\n")
        with atomic_output(npy, what="feature file") as tmp:
            with open(tmp, "wb") as f:
                f.write(buf.getbuffer())
        report.written.append(vid)
        if on_video is not None:
            on_video(vid, None)
    return report
