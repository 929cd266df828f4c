"""Integrity checksum of exported ONNX files (no onnx package needed to check it).

At export (:func:`mse_rt.export.export_onnx`) the metadata entry ``mse_rt.file_sha256`` is first
written as 64 '0' characters; the sha256 of the whole file is then computed and written over
that placeholder (same length, so the protobuf stays valid). To verify, the digest is put back to
the placeholder and the file hashed again. Any changed byte, in the weights or in the graph,
changes the hash: a damaged file is refused instead of giving different detections.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ModelFileError

CHECKSUM_KEY = "mse_rt.file_sha256"
CHECKSUM_PLACEHOLDER = "0" * 64


class IntegrityError(ModelFileError):
    """A model file's bytes do not match the checksum recorded when it was written."""


def verify_onnx_checksum(path: str | Path, recorded: str | None) -> bool:
    """Check ``path`` against the ``recorded`` digest (from its metadata).

    Returns False when the file has no checksum (written by an mse_rt without one); raises
    :class:`IntegrityError` when the bytes do not match.
    """
    if not recorded:
        return False
    path = Path(path)
    data = path.read_bytes()
    if len(recorded) != 64 or data.count(recorded.encode()) != 1:
        raise IntegrityError(f"{path}: corrupt ONNX file (its integrity checksum entry is damaged); re-export it")
    actual = hashlib.sha256(data.replace(recorded.encode(), CHECKSUM_PLACEHOLDER.encode())).hexdigest()
    if actual != recorded:
        raise IntegrityError(f"{path}: corrupt ONNX file: sha256 {actual[:16]}... differs from the {recorded[:16]}... "
                             "recorded at export (changed or damaged bytes); re-export it")
    return True
