"""Integrity checksum of exported ONNX files (no onnx package needed to check it).

At export (:func:`mse_rt.export.export_onnx`) the metadata entry ``mse_rt.file_sha256`` is first
written as 64 '0' characters; the sha256 of the whole file is then computed and written over
that placeholder (same length, so the protobuf stays valid). To verify, the digest is put back to
the placeholder and the file hashed again. Any changed byte, in the weights or in the graph,
changes the hash: a damaged file is refused instead of giving different detections.

Every ONNX file mse_rt writes carries the checksum, so an mse_rt ONNX file without it (entry
removed, or written by hand) is refused too, unless the caller accepts an unverified file
(``allow_unverified=True``, CLI ``--allow-unverified-model``): otherwise deleting the entry would
switch the check off.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ModelFileError

CHECKSUM_KEY = "mse_rt.file_sha256"
CHECKSUM_PLACEHOLDER = "0" * 64


class IntegrityError(ModelFileError):
    """A model file's bytes do not match the checksum recorded when it was written, or it has none."""


def differing_digests(actual: str, expected: str, least: int = 16) -> tuple[str, str]:
    """Prefixes of two hex digests long enough to show where they differ (at least ``least``
    characters, and 8 past the first differing one), each with '...' when shortened."""
    first = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
    n = max(least, first + 8)

    def cut(d: str) -> str:
        return d if len(d) <= n else d[:n] + "..."

    return cut(actual), cut(expected)


def verify_onnx_checksum(path: str | Path, recorded: str | None, allow_unverified: bool = False) -> bool:
    """Check ``path`` against the ``recorded`` digest (from its metadata); True when it matches.

    A file without a checksum raises :class:`IntegrityError` unless ``allow_unverified`` (then
    False is returned: nothing was verified); bytes that do not match raise :class:`IntegrityError`.
    """
    path = Path(path)
    if not recorded:
        if allow_unverified:
            return False
        raise IntegrityError(f"{path}: this mse_rt ONNX file has no integrity checksum ({CHECKSUM_KEY}; every "
                             "mse_rt export writes one), so changed bytes could not be detected; re-export it, or "
                             "accept it unverified (allow_unverified=True, CLI --allow-unverified-model)")
    data = path.read_bytes()
    if len(recorded) != 64 or data.count(recorded.encode()) != 1:
        raise IntegrityError(f"{path}: corrupt ONNX file (its integrity checksum entry is damaged); re-export it")
    actual = hashlib.sha256(data.replace(recorded.encode(), CHECKSUM_PLACEHOLDER.encode())).hexdigest()
    if actual != recorded:
        got, want = differing_digests(actual, recorded)
        raise IntegrityError(f"{path}: corrupt ONNX file: sha256 {got} differs from the {want} recorded at export "
                             "(changed or damaged bytes); re-export it")
    return True
