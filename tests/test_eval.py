"""The evaluator against the reference's expected mAPs (golden/eval.npz) and hand-made cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mse_rt.cli import main
from mse_rt.eval import ANET_TIOUS, THUMOS_TIOUS, evaluate, interpolated_ap

from golden_utils import GOLDEN


def _golden_preds():
    z = np.load(GOLDEN / "eval.npz")
    res: dict[str, list] = {}
    for v, s, e, lab, sc in zip(z["pred_video_id"], z["pred_t_start"], z["pred_t_end"], z["pred_label"],
                                z["pred_score"]):
        res.setdefault(str(v), []).append({"segment": [float(s), float(e)], "label": int(lab), "score": float(sc)})
    return z, {"results": res}


@pytest.mark.parametrize("which", ["thumos", "anet"])
def test_matches_reference_map(which):
    z, preds = _golden_preds()
    tious = z[f"{which}_tious"]
    np.testing.assert_allclose(tious, THUMOS_TIOUS if which == "thumos" else ANET_TIOUS)
    r = evaluate(preds, GOLDEN / "eval_gt.json", tious, split="validation")
    np.testing.assert_allclose(r.mAP, z[f"{which}_mAP"], atol=1e-6, rtol=0)
    assert abs(r.average - float(z[f"{which}_avg"])) <= 1e-6


def _gt(anns):
    return {"database": {"v": {"subset": "validation", "annotations": [
        {"segment": list(s), "label_id": c} for s, c in anns]}}}


def test_hand_computed_ap():
    """Two GT of one class, three predictions: TP, FP, TP by descending score -> AP by hand."""
    gt = _gt([((0, 10), 0), ((20, 30), 0)])
    preds = {"results": {"v": [{"segment": [0, 10], "score": 0.9, "label": 0},
                               {"segment": [40, 50], "score": 0.8, "label": 0},
                               {"segment": [20, 30], "score": 0.7, "label": 0}]}}
    r = evaluate(preds, gt, [0.5])
    # precision 1, 1/2, 2/3 at recall 0.5, 0.5, 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    assert r.mAP[0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_duplicates_zero_length_and_double_match():
    gt = _gt([((0, 10), 0), ((0.0005, 10.0005), 0), ((5, 5), 0)])  # dup within 1e-3, zero length
    preds = {"results": {"v": [{"segment": [0, 10], "score": 0.9, "label": 0},
                               {"segment": [0, 10], "score": 0.8, "label": 0},  # same GT again: FP
                               {"segment": [0, 10], "score": 0.95, "label": 7}]}}  # class not in GT: ignored
    r = evaluate(preds, gt, [0.5])
    assert r.classes == [0]
    assert r.mAP[0] == pytest.approx(1.0)


def test_interpolated_ap_envelope():
    prec = np.array([[1.0, 0.5, 0.6667]])
    rec = np.array([[0.5, 0.5, 1.0]])
    assert interpolated_ap(prec, rec)[0] == pytest.approx(0.5 * 1 + 0.5 * 0.6667)


def test_cli_eval(tmp_path, capsys):
    _, preds = _golden_preds()
    p = tmp_path / "pred.json"
    p.write_text(json.dumps(preds))
    assert main(["eval", "--gt", str(GOLDEN / "eval_gt.json"), "--tious", "thumos", str(p)]) == 0
    out = capsys.readouterr().out
    z = np.load(GOLDEN / "eval.npz")
    assert f"{float(z['thumos_avg']) * 100:.2f}" in out
