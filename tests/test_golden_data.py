"""The vendored golden vectors are intact (hashes recorded when they were copied from the reference run)."""

from __future__ import annotations

import hashlib

from golden_utils import GOLDEN


def test_vendored_golden_files_match_their_recorded_hashes():
    lines = (GOLDEN / "SHA256SUMS").read_text().splitlines()
    assert len(lines) >= 15, "SHA256SUMS lists too few files"
    bad = []
    for line in lines:
        digest, name = line.split(maxsplit=1)
        path = GOLDEN / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(name)
    assert not bad, f"vendored golden files missing or changed: {bad}"
