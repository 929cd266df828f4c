"""Comparing outputs with a reference under the golden rule (tests/data/golden/README.md).

Used by the tests, the backend parity harness and ``benchmarks/gpu_check.py``: intermediates
within ``1e-4 * max(1, max |ref|)``; detections as a one-to-one matching (same count, same
label, score within 1e-5, both ends within 1e-3), not element by element after a sort, since
near-equal scores may change places under another summation order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def golden_videos(root: str | Path, name: str) -> list[dict]:
    """[{video_id, length, padded_len, num_detections, data (npz)}] of one golden config folder
    ``root / name`` (layout: tests/data/golden/README.md)."""
    root = Path(root)
    index = json.loads((root / name / "index.json").read_text())
    out = []
    for v in index["videos"]:
        v = dict(v)
        v["data"] = np.load(root / name / "videos" / f"{v['video_id']}.npz")
        out.append(v)
    return out


def assert_close_rel(got, ref, what: str, rel: float = 1e-4) -> None:
    """Golden rule for intermediates: max |got - ref| <= rel * max(1, max |ref|), with a report."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} vs reference {ref.shape}"
    if ref.size == 0:
        return
    tol = rel * max(1.0, float(np.abs(ref).max()))
    err = np.abs(got - ref)
    if not (err <= tol).all():
        bad = np.argwhere(err > tol)
        first = tuple(bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {err.size} differ beyond {tol:.2e}; first at {first}: "
            f"got {got[first]:.6g} ref {ref[first]:.6g}; max err {err.max():.3e}"
        )


def match_detections(segs, scores, labels, ref_segs, ref_scores, ref_labels, what: str,
                     score_tol: float = 1e-5, seg_tol: float = 1e-3) -> None:
    """Golden rule for detections: same count and a one-to-one matching where each pair has the
    same label, scores within ``score_tol`` and both ends within ``seg_tol`` (bipartite matching,
    so near-equal scores may change places)."""
    segs, scores, labels = np.asarray(segs), np.asarray(scores), np.asarray(labels)
    ref_segs, ref_scores, ref_labels = np.asarray(ref_segs), np.asarray(ref_scores), np.asarray(ref_labels)
    assert len(scores) == len(ref_scores), f"{what}: {len(scores)} detections vs reference {len(ref_scores)}"
    n = len(scores)
    if n == 0:
        return
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    compat: list[list[int]] = []
    for i in range(n):
        lo = np.searchsorted(sorted_scores, ref_scores[i] - score_tol, side="left")
        hi = np.searchsorted(sorted_scores, ref_scores[i] + score_tol, side="right")
        cand = order[lo:hi]
        ok = (labels[cand] == ref_labels[i]) & (np.abs(segs[cand] - ref_segs[i]).max(axis=1) <= seg_tol)
        compat.append(cand[ok].tolist())
    owner = {}  # got index -> ref index

    def augment(i: int, seen: set) -> bool:
        for j in compat[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    unmatched = [i for i in range(n) if not augment(i, set())]
    if unmatched:
        i = unmatched[0]
        raise AssertionError(
            f"{what}: {len(unmatched)} of {n} reference detections have no match; first: segment "
            f"{ref_segs[i].tolist()} score {ref_scores[i]:.6f} label {int(ref_labels[i])}"
        )
