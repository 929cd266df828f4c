"""ActivityNet-style detection mAP (SPEC.md section 11), matching the reference evaluator.

Per class, predictions sorted by score (descending) are matched greedily to unmatched ground
truth of the same video at each tIoU threshold (all thresholds at once); AP is the interpolated
area under precision / recall (VOC 2011); mAP averages over the classes present in the ground
truth, and the headline number averages over thresholds. Duplicate ground truth (same label,
both ends within 1e-3 s) and zero-length ground truth are removed first. Predictions of classes
absent from the ground truth are ignored (the reference would fold them into another class's
index by accident).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

THUMOS_TIOUS = np.linspace(0.3, 0.7, 5)
ANET_TIOUS = np.linspace(0.5, 0.95, 10)


@dataclass
class Segments:
    """Flat table of segments in seconds: video ids, (N,) starts / ends, (N,) int labels, scores."""

    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    score: np.ndarray | None = None


@dataclass
class EvalResult:
    """``tious`` (J,), ``mAP`` (J,) per threshold, ``average`` (mean over thresholds), ``ap`` (J, C)
    per class in ``classes`` order (ground-truth label ids, sorted)."""

    tious: np.ndarray
    mAP: np.ndarray
    average: float
    ap: np.ndarray
    classes: list[int]

    def table(self) -> str:
        rows = [f"{'tIoU':>6}  {'mAP (%)':>8}"]
        rows += [f"{t:>6.2f}  {m * 100:>8.2f}" for t, m in zip(self.tious, self.mAP)]
        rows.append(f"{'avg':>6}  {self.average * 100:>8.2f}")
        return "\n".join(rows)


def _dedup(annotations: list[dict], tol: float = 1e-3) -> list[dict]:
    kept: list[dict] = []
    for a in annotations:
        s, e, lab = float(a["segment"][0]), float(a["segment"][1]), int(a["label_id"])
        if not any(abs(s - float(k["segment"][0])) <= tol and abs(e - float(k["segment"][1])) <= tol
                   and lab == int(k["label_id"]) for k in kept):
            kept.append(a)
    return kept


def load_ground_truth(gt: str | Path | dict, split: str | None = None) -> Segments:
    """Ground truth from an ActivityNet-format JSON (path or dict with ``database``)."""
    if not isinstance(gt, dict):
        gt = json.loads(Path(gt).read_text())
    if "database" not in gt:
        raise InputError("ground truth must be ActivityNet JSON with a 'database' key")
    vids, starts, ends, labels = [], [], [], []
    for vid, v in gt["database"].items():
        if split is not None and v.get("subset", "").lower() != split.lower():
            continue
        for a in _dedup(v["annotations"]):
            vids.append(vid)
            starts.append(float(a["segment"][0]))
            ends.append(float(a["segment"][1]))
            labels.append(int(a["label_id"]))
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    keep = s != e  # zero-length instances are dropped (after label indexing in the reference)
    return Segments(np.asarray(vids, dtype=object)[keep], s[keep], e[keep], np.asarray(labels, dtype=np.int64)[keep])


def load_predictions(results) -> Segments:
    """Predictions from a list of :class:`mse_rt.DetectionResult`, a results JSON path, or its dict
    (``{"results": {vid: [{"segment", "score", "label"}]}}``; ``label_id``/``scores`` also accepted)."""
    vids, starts, ends, labels, scores = [], [], [], [], []
    if isinstance(results, (str, Path)):
        results = json.loads(Path(results).read_text())
    if isinstance(results, dict):
        table = results.get("results", results.get("database"))
        if table is None:
            raise InputError("predictions JSON needs a 'results' key (ActivityNet detection format)")
        for vid, entries in table.items():
            for e in entries:
                vids.append(vid)
                starts.append(float(e["segment"][0]))
                ends.append(float(e["segment"][1]))
                labels.append(int(e.get("label", e.get("label_id"))))
                scores.append(float(e.get("score", e.get("scores"))))
    else:
        for r in results:
            n = len(r)
            vids += [r.video_id] * n
            starts += r.segments[:, 0].tolist()
            ends += r.segments[:, 1].tolist()
            labels += r.labels.tolist()
            scores += r.scores.tolist()
    return Segments(np.asarray(vids, dtype=object), np.asarray(starts, np.float64), np.asarray(ends, np.float64),
                    np.asarray(labels, np.int64), np.asarray(scores, np.float64))


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC 2011 interpolated AP for each row of (J, N) precision / recall curves."""
    J = precision.shape[0]
    mprec = np.concatenate([np.zeros((J, 1)), precision, np.zeros((J, 1))], axis=1)
    mrec = np.concatenate([np.zeros((J, 1)), recall, np.ones((J, 1))], axis=1)
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]  # precision envelope
    step = mrec[:, 1:] - mrec[:, :-1]
    return (step * mprec[:, 1:]).sum(axis=1)  # zero steps contribute nothing


def average_precision(gt: Segments, pred: Segments, tious: np.ndarray) -> np.ndarray:
    """AP at each threshold (J,) for one class (all videos)."""
    J = len(tious)
    if len(pred.start) == 0:
        return np.zeros(J)
    order = pred.score.argsort()[::-1]  # the reference's order, ties included
    by_video: dict[str, np.ndarray] = {}
    for i, v in enumerate(gt.video):
        by_video.setdefault(v, []).append(i)
    by_video = {v: np.asarray(ix) for v, ix in by_video.items()}
    locked = np.zeros((J, len(gt.start)), dtype=bool)
    tp = np.zeros((J, len(order)))
    for rank, p in enumerate(order):
        ix = by_video.get(pred.video[p])
        if ix is None:
            continue  # no ground truth in that video: false positive at every threshold
        inter = (np.minimum(pred.end[p], gt.end[ix]) - np.maximum(pred.start[p], gt.start[ix])).clip(0)
        union = (gt.end[ix] - gt.start[ix]) + (pred.end[p] - pred.start[p]) - inter
        tiou = inter / union
        srt = tiou.argsort()[::-1]
        cand = (tiou[srt][None, :] >= tious[:, None]) & ~locked[:, ix[srt]]  # (J, n_gt_video)
        hit = cand.any(axis=1)
        first = cand.argmax(axis=1)
        rows = np.nonzero(hit)[0]
        locked[rows, ix[srt[first[rows]]]] = True
        tp[rows, rank] = 1
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(1 - tp, axis=1)
    return interpolated_ap(tp_c / (tp_c + fp_c), tp_c / len(gt.start))


def evaluate(results, gt, tiou_thresholds=THUMOS_TIOUS, split: str | None = None) -> EvalResult:
    """Detection mAP of ``results`` (DetectionResults, results JSON path or dict) against ``gt``
    (ActivityNet JSON path or dict; ``split`` filters its ``subset``). Segments in seconds."""
    tious = np.asarray(tiou_thresholds, dtype=np.float64)
    g = load_ground_truth(gt, split)
    p = load_predictions(results)
    classes = sorted(set(g.label.tolist()))
    ap = np.zeros((len(tious), len(classes)))
    for c_idx, c in enumerate(classes):
        gm, pm = g.label == c, p.label == c
        ap[:, c_idx] = average_precision(
            Segments(g.video[gm], g.start[gm], g.end[gm], g.label[gm]),
            Segments(p.video[pm], p.start[pm], p.end[pm], p.label[pm], p.score[pm]), tious)
    mAP = ap.mean(axis=1) if classes else np.zeros(len(tious))
    return EvalResult(tious, mAP, float(mAP.mean()), ap, classes)
