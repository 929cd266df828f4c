"""ActivityNet-style detection mAP (docs/spec/evaluation.md), matching the reference evaluator.

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
import logging
import warnings
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
    names: dict | None = None  # ground truth: class name -> id
    subsets: list | None = None  # ground truth: the subsets loaded
    video_ids: set | None = None  # every video of the table, those without segments included


@dataclass
class EvalResult:
    """``tious`` (J,), ``mAP`` (J,) per threshold, ``average`` (mean over thresholds), ``ap`` (J, C)
    per class in ``classes`` order (ground-truth label ids, sorted)."""

    tious: np.ndarray
    mAP: np.ndarray
    average: float
    ap: np.ndarray
    classes: list[int]
    subsets: list[str] | None = None  # ground-truth subsets that were scored
    swapped: int = 0  # predictions with end < start (scored as false positives)
    unmatched: str = ""  # the partial-overlap warning (results / ground-truth videos without a partner), or ""

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


def _read_json(source, what: str) -> dict:
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{what} {path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where} must be a number, got {type(value).__name__} ({value!r})")
    v = float(value)
    if not np.isfinite(v):
        raise InputError(f"{where} must be finite, got {v}")
    return v


def _segment(value, where: str, allow_swapped: bool = False) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(f"{where}: 'segment' must be [start, end] in seconds, got {value!r}")
    s, e = _number(value[0], f"{where} segment start"), _number(value[1], f"{where} segment end")
    if e < s and not allow_swapped:
        raise InputError(f"{where}: segment end {e} < start {s} (start and end swapped?)")
    return s, e


def _entry(entry, where: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object, got {type(entry).__name__}")
    for k in keys:
        if k not in entry:
            raise InputError(f"{where}: missing key '{k}' (has {sorted(entry)})")
    return entry


def ground_truth_subsets(gt: str | Path | dict) -> dict[str, int]:
    """{subset: number of videos} of an ActivityNet-format ground truth."""
    db = _read_json(gt, "ground truth").get("database")
    if not isinstance(db, dict):
        raise InputError("ground truth must be ActivityNet JSON with a 'database' object")
    out: dict[str, int] = {}
    for v in db.values():
        sub = str(v.get("subset", "")) if isinstance(v, dict) else ""
        out[sub] = out.get(sub, 0) + 1
    return out


def load_ground_truth(gt: str | Path | dict, split: str | None = None) -> Segments:
    """Ground truth from an ActivityNet-format JSON (path or dict with ``database``).

    ``split``: the ``subset`` to score (case-insensitive); ``"all"`` scores every subset; None is
    allowed only when the ground truth holds a single subset (scoring a mix of subsets silently
    gives a different number: 21.50 instead of 39.90 on THUMOS14). The result's ``names`` maps
    class names (annotation ``label``) to ids (``label_id``).
    """
    gt = _read_json(gt, "ground truth")
    db = gt.get("database")
    if not isinstance(db, dict):
        raise InputError("ground truth must be ActivityNet JSON with a 'database' object")
    subsets = ground_truth_subsets(gt)
    if split is None and len(subsets) > 1:
        raise InputError("ground truth holds several subsets (" + ", ".join(f"{k or '(none)'}: {n} videos"
                         for k, n in sorted(subsets.items())) + "); choose one with split= / --split NAME, or 'all'")
    vids, starts, ends, labels = [], [], [], []
    names: dict[str, int] = {}
    scored: set[str] = set()
    all_ids: set[str] = set()
    for vid, v in db.items():
        if not isinstance(v, dict) or not isinstance(v.get("annotations"), list):
            raise InputError(f"ground truth video {vid!r}: expected an object with an 'annotations' list")
        if split not in (None, "all") and str(v.get("subset", "")).lower() != split.lower():
            continue
        scored.add(str(v.get("subset", "")))
        all_ids.add(str(vid))
        anns = []
        for k, a in enumerate(v["annotations"]):
            where = f"ground truth {vid!r} annotation {k}"
            a = _entry(a, where, ("segment", "label_id"))
            s, e = _segment(a["segment"], where)
            lab = a["label_id"]
            if isinstance(lab, bool) or not isinstance(lab, int):
                raise InputError(f"{where}: label_id must be an integer, got {lab!r}")
            if "label" in a:
                names.setdefault(str(a["label"]), lab)
            anns.append({"segment": [s, e], "label_id": lab})
        for a in _dedup(anns):
            vids.append(vid)
            starts.append(float(a["segment"][0]))
            ends.append(float(a["segment"][1]))
            labels.append(int(a["label_id"]))
    if not scored:
        raise InputError(f"no ground truth of subset {split!r}; subsets present: "
                         + ", ".join(f"{k or '(none)'} ({n} videos)" for k, n in sorted(subsets.items())))
    s = np.asarray(starts, dtype=np.float64)
    e = np.asarray(ends, dtype=np.float64)
    keep = s != e  # zero-length instances are dropped (after label indexing in the reference)
    if not keep.any():
        raise InputError(f"the ground truth of subset(s) {sorted(scored)} holds no (non-empty) action instance")
    out = Segments(np.asarray(vids, dtype=object)[keep], s[keep], e[keep], np.asarray(labels, dtype=np.int64)[keep])
    out.names = names
    out.subsets = sorted(scored)
    out.video_ids = all_ids
    return out


def _label_id(value, names: dict[str, int] | None, where: str) -> int:
    if isinstance(value, str):
        if names is None:
            raise InputError(f"{where}: label {value!r} is a class name but no ground-truth names are known")
        if value not in names:
            known = ", ".join(sorted(names)[:10])
            raise InputError(f"{where}: class name {value!r} is not in the ground truth (names: {known}...)")
        return names[value]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{where}: label must be a class id or a class name, got {value!r}")
    return int(value)


def load_predictions(results, names: dict[str, int] | None = None, strict: bool = False) -> Segments:
    """Predictions from a list of :class:`mse_rt.DetectionResult`, a results JSON path, or its dict
    (``{"results": {vid: [{"segment", "score", "label"}]}}``; ``label_id``/``scores`` also accepted).

    Labels may be class ids or class names (mapped through ``names``, from the ground truth). A
    prediction with end < start overlaps nothing: it is scored as a false positive, as the
    reference evaluator scores it (the golden mAPs include such predictions); ``strict=True``
    refuses it instead. Missing keys, non-numeric values and unknown class names always raise.
    """
    vids, starts, ends, labels, scores = [], [], [], [], []
    all_ids: set[str] = set()
    if isinstance(results, (str, Path, dict)):
        results = _read_json(results, "predictions")
        table = results.get("results", results.get("database"))
        if not isinstance(table, dict):
            raise InputError("predictions JSON needs a 'results' object (ActivityNet detection format)")
        for vid, entries in table.items():
            if not isinstance(entries, list):
                raise InputError(f"predictions for {vid!r}: expected a list of detections")
            all_ids.add(str(vid))
            for k, e in enumerate(entries):
                where = f"prediction {vid!r} #{k}"
                e = _entry(e, where, ("segment",))
                s, t = _segment(e["segment"], where, allow_swapped=not strict)
                if "label" not in e and "label_id" not in e:
                    raise InputError(f"{where}: missing key 'label'")
                if "score" not in e and "scores" not in e:
                    raise InputError(f"{where}: missing key 'score'")
                vids.append(vid)
                starts.append(s)
                ends.append(t)
                labels.append(_label_id(e.get("label", e.get("label_id")), names, where))
                scores.append(_number(e.get("score", e.get("scores")), f"{where} score"))
    else:
        for r in results:
            all_ids.add(str(r.video_id))
            n = len(r)
            vids += [r.video_id] * n
            starts += r.segments[:, 0].tolist()
            ends += r.segments[:, 1].tolist()
            labels += r.labels.tolist()
            scores += r.scores.tolist()
    return Segments(np.asarray(vids, dtype=object), np.asarray(starts, np.float64), np.asarray(ends, np.float64),
                    np.asarray(labels, np.int64), np.asarray(scores, np.float64), video_ids=all_ids)


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
        with np.errstate(divide="ignore", invalid="ignore"):
            # a prediction with end < start has inter = 0: tIoU 0 (the reference's 0/x, -0 or NaN all
            # fail every threshold), never NaN here
            tiou = np.where(union > 0, inter / union, 0.0)
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


def evaluate(results, gt, tiou_thresholds=THUMOS_TIOUS, split: str | None = None, strict: bool = False) -> EvalResult:
    """Detection mAP of ``results`` (DetectionResults, results JSON path or dict) against ``gt``
    (ActivityNet JSON path or dict; ``split`` filters its ``subset``). Segments in seconds."""
    tious = check_tious(tiou_thresholds)
    g = load_ground_truth(gt, split)
    p = load_predictions(results, g.names, strict=strict)
    unmatched = check_video_overlap(p.video_ids or set(), g.video_ids or set(), g.subsets or [])
    classes = sorted(set(g.label.tolist()))
    foreign = check_class_overlap(p.label, classes)
    unmatched = "; ".join(m for m in (unmatched, foreign) if m)
    ap = np.zeros((len(tious), len(classes)))
    for c_idx, c in enumerate(classes):
        gm, pm = g.label == c, p.label == c
        ap[:, c_idx] = average_precision(
            Segments(g.video[gm], g.start[gm], g.end[gm], g.label[gm]),
            Segments(p.video[pm], p.start[pm], p.end[pm], p.label[pm], p.score[pm]), tious)
    mAP = ap.mean(axis=1)
    return EvalResult(tious, mAP, float(mAP.mean()), ap, classes, g.subsets, int((p.end < p.start).sum()), unmatched)


def check_class_overlap(pred_labels: np.ndarray, classes: list[int]) -> str:
    """Predictions of classes the ground truth does not hold are ignored (module docstring): when
    that is every prediction, :class:`InputError` (a mAP of 0 would look like a bad model, not a
    label mapping of another dataset); when it is some, the count is returned, and warned when some
    of them lie beyond the ground truth's smallest and largest class id."""
    if not len(pred_labels):
        return ""
    outside = ~np.isin(pred_labels, np.asarray(classes, dtype=np.int64))
    if not outside.any():
        return ""
    ex = ", ".join(str(v) for v in sorted(set(pred_labels[outside].tolist()))[:5])
    known = f"{classes[0]}..{classes[-1]}" if classes == list(range(classes[0], classes[-1] + 1)) else str(classes[:10])
    if outside.all():
        raise InputError(f"no prediction has a class of the ground truth: result labels e.g. {ex}, ground-truth "
                         f"classes {known}; results of another dataset or label mapping?")
    msg = (f"{int(outside.sum())} of {len(pred_labels)} predictions have classes the ground truth does not hold "
           f"(e.g. {ex}; ground-truth classes {known}): ignored")
    # a class id between the ground truth's smallest and largest is an ordinary false positive when a
    # few videos are scored (their truth holds some classes only): logged, not warned; ids beyond
    # that range point at another label mapping
    lo, hi = min(classes), max(classes)
    beyond = outside & ((pred_labels < lo) | (pred_labels > hi))
    if beyond.any():
        warnings.warn(msg, UserWarning, stacklevel=3)
    else:
        logging.getLogger(__name__).info(msg)
    return msg


def check_video_overlap(pred_ids: set[str], gt_ids: set[str], subsets: list[str]) -> str:
    """Compare the videos of the results with those of the ground truth (docs/spec/evaluation.md).

    No video in common raises :class:`InputError` (a mAP of 0 would look like a bad model, not a
    wrong file or split); a partial overlap warns (:class:`UserWarning`) with the counts and
    returns that message; a full overlap returns "".
    """
    where = f"ground truth (subset{'s' if len(subsets) != 1 else ''} {', '.join(repr(x) for x in subsets)})"
    common = pred_ids & gt_ids
    if not pred_ids:
        raise InputError("the results hold no videos: nothing to score")
    if not common:
        ex_p = ", ".join(repr(v) for v in sorted(pred_ids)[:3])
        ex_g = ", ".join(repr(v) for v in sorted(gt_ids)[:3])
        raise InputError(f"none of the {len(pred_ids)} result videos is in the {where} ({len(gt_ids)} videos): "
                         f"results have e.g. {ex_p}, the ground truth e.g. {ex_g}; wrong file, split or --ids?")
    extra, absent = len(pred_ids - gt_ids), len(gt_ids - pred_ids)
    if not extra and not absent:
        return ""
    msg = (f"{len(common)} videos scored: {extra} of the {len(pred_ids)} result videos are not in the {where} "
           f"(ignored), {absent} of its {len(gt_ids)} videos have no results (their actions count as missed)")
    warnings.warn(msg, UserWarning, stacklevel=3)
    return msg


def check_tious(tiou_thresholds) -> np.ndarray:
    """tIoU thresholds as a float64 array; :class:`InputError` unless 1-D, non-empty, each in (0, 1]."""
    try:
        tious = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"tIoU thresholds must be numbers, got {tiou_thresholds!r}") from exc
    if tious.size == 0:
        raise InputError("no tIoU thresholds given")
    bad = tious[~((tious > 0) & (tious <= 1))]
    if bad.size:
        raise InputError(f"tIoU thresholds must lie in (0, 1], got {bad.tolist()}")
    return tious
