"""Helpers shared by the tests: golden-vector paths, tolerances and the detection matcher."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Vendored copies (tests/data/golden/PROVENANCE.md says where they come from); MSE_RT_GOLDEN
# points the tests at another copy, e.g. a freshly regenerated one.
GOLDEN = Path(os.environ.get("MSE_RT_GOLDEN", Path(__file__).resolve().parent / "data" / "golden"))
# The three published configs ship inside the package (mse_rt/assets/configs).
CONFIGS = REPO / "mse_rt" / "assets" / "configs"
GOLDEN_CONFIGS = ("thumos_small", "anet_small")


def golden_videos(name: str) -> list[dict]:
    """[{video_id, length, padded_len, num_detections, data (npz)}] of one golden config."""
    index = json.loads((GOLDEN / name / "index.json").read_text())
    out = []
    for v in index["videos"]:
        v = dict(v)
        v["data"] = np.load(GOLDEN / name / "videos" / f"{v['video_id']}.npz")
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
