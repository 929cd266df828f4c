"""The evaluator against the reference's expected mAPs (golden/eval.npz) and hand-made cases."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from mse_rt import InputError
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


def _gt_multi():
    return {"database": {
        "v1": {"subset": "validation", "annotations": [{"segment": [0, 10], "label_id": 0, "label": "jump"}]},
        "v2": {"subset": "test", "annotations": [{"segment": [5, 9], "label_id": 1, "label": "run"}]}}}


def _pred(entries):
    return {"results": {"v1": entries}}


@pytest.mark.parametrize("gt,match", [
    (_gt([((10, 2), 0)]), "end 2.0 < start 10.0"),
    ({"database": {"v": {"subset": "validation", "annotations": [{"segment": [0, 1]}]}}}, "missing key 'label_id'"),
    ({"database": {"v": {"subset": "validation", "annotations": [{"segment": [0, "x"], "label_id": 0}]}}},
     "segment end must be a number"),
    ({"videos": {}}, "'database' object"),
    ({"database": {"v": {"subset": "validation", "annotations": [{"segment": [3, 3], "label_id": 0}]}}},
     "no \\(non-empty\\) action instance"),
])
def test_bad_ground_truth(gt, match):
    with pytest.raises(InputError, match=match):
        evaluate(_pred([]), gt, [0.5])


@pytest.mark.parametrize("entry,match", [
    ({"segment": [0, 10], "score": "high", "label": 0}, "score must be a number"),
    ({"segment": [0, 10], "label": 0}, "missing key 'score'"),
    ({"score": 0.5, "label": 0}, "missing key 'segment'"),
    ({"segment": [0, 10], "score": 0.9, "label": "fly"}, "class name 'fly' is not in the ground truth"),
])
def test_bad_predictions(entry, match):
    with pytest.raises(InputError, match=match):
        evaluate(_pred([entry]), _gt_multi(), [0.5], split="validation")


@pytest.mark.parametrize("tious", [[0.0], [1.5], [-0.3, 0.5], []])
def test_tiou_thresholds_must_lie_in_0_1(tious):
    with pytest.raises(InputError, match="tIoU thresholds"):
        evaluate(_pred([]), _gt([((0, 10), 0)]), tious)


def test_class_names_map_through_the_ground_truth():
    by_id = evaluate(_pred([{"segment": [0, 10], "score": 0.9, "label": 0}]), _gt_multi(), [0.5], split="validation")
    by_name = evaluate(_pred([{"segment": [0, 10], "score": 0.9, "label": "jump"}]), _gt_multi(), [0.5],
                       split="validation")
    assert by_id.mAP[0] == by_name.mAP[0] == pytest.approx(1.0)


def test_split_must_be_chosen_when_the_ground_truth_mixes_subsets():
    with pytest.raises(InputError, match=r"several subsets \(test: 1 videos, validation: 1 videos\)"):
        evaluate(_pred([]), _gt_multi(), [0.5])
    with pytest.warns(UserWarning, match="1 of its 2 videos have no results"):  # v2 (test) has none
        r = evaluate(_pred([{"segment": [0, 10], "score": 0.9, "label": 0}]), _gt_multi(), [0.5], split="all")
    assert r.subsets == ["test", "validation"] and r.classes == [0, 1] and r.mAP[0] == pytest.approx(0.5)
    with pytest.raises(InputError, match="no ground truth of subset 'training'"):
        evaluate(_pred([]), _gt_multi(), [0.5], split="training")


def test_cli_eval_errors_are_one_line(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_gt_multi()))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["eval", "--gt", str(gt), "--split", "validation", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    good = tmp_path / "p.json"
    good.write_text(json.dumps(_pred([{"segment": [0, 10], "score": 0.9, "label": "jump"}])))
    assert main(["eval", "--gt", str(gt), "--tious", "0,0.5", str(good), "--split", "validation"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["eval", "--gt", str(gt), "--tious", "0.5", str(good)]) == 2  # two subsets, no --split
    assert main(["eval", "--gt", str(gt), "--tious", "0.5", "--split", "validation", str(good)]) == 0
    assert "subset(s) scored: validation" in capsys.readouterr().out


def test_swapped_predictions_are_false_positives_or_refused_when_strict():
    z, preds = _golden_preds()
    n_swapped = int((z["pred_t_end"] < z["pred_t_start"]).sum())
    assert n_swapped > 0  # the reference's own prediction set holds some: its mAP counts them as FPs
    r = evaluate(preds, GOLDEN / "eval_gt.json", THUMOS_TIOUS, split="validation")
    assert r.swapped == n_swapped and np.isfinite(r.mAP).all()
    with pytest.raises(InputError, match="start and end swapped"):
        evaluate(preds, GOLDEN / "eval_gt.json", THUMOS_TIOUS, split="validation", strict=True)
    one = [{"segment": [0, 10], "score": 0.9, "label": 0}]
    assert evaluate(_pred(one + [{"segment": [10, 0], "score": 0.95, "label": 0}]), _gt_multi(), [0.5],
                    split="validation").mAP[0] == pytest.approx(0.5)  # FP ranked first: precision 1/2 at recall 1


# ---------------------------------------------------------------- video overlap (issue 24: S8)
def test_results_matching_no_ground_truth_video_are_an_error():
    """Used to print mAP 0.00 without a word (wrong file, split or --ids)."""
    preds = {"results": {"other_1": [{"segment": [0, 10], "score": 0.9, "label": 0}], "other_2": []}}
    with pytest.raises(InputError, match=r"none of the 2 result videos is in the ground truth \(subset 'validation'\) "
                                         r"\(1 videos\): results have e.g. 'other_1', 'other_2', the ground truth "
                                         r"e.g. 'v1'"):
        evaluate(preds, _gt_multi(), [0.5], split="validation")
    with pytest.raises(InputError, match="the results hold no videos"):
        evaluate({"results": {}}, _gt_multi(), [0.5], split="validation")


def test_partial_overlap_warns_with_counts():
    preds = {"results": {"v1": [{"segment": [0, 10], "score": 0.9, "label": 0}], "x1": [], "x2": []}}
    gt = {"database": {f"v{i}": {"subset": "validation", "annotations": [{"segment": [0, 10], "label_id": 0}]}
                       for i in (1, 2, 3)}}
    with pytest.warns(UserWarning, match=r"1 videos scored: 2 of the 3 result videos are not in the ground truth "
                                         r"\(subset 'validation'\) \(ignored\), 2 of its 3 videos have no results"):
        r = evaluate(preds, gt, [0.5])
    assert r.mAP[0] == pytest.approx(1 / 3)  # 1 of 3 instances found at precision 1
    assert "2 of its 3 videos have no results" in r.unmatched


def test_full_overlap_is_silent():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate(_pred([{"segment": [0, 10], "score": 0.9, "label": 0}]), _gt_multi(), [0.5], split="validation")
    assert r.unmatched == "" and r.mAP[0] == pytest.approx(1.0)


def test_cli_eval_overlap_messages_are_one_line(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_gt_multi()))
    none = tmp_path / "none.json"
    none.write_text(json.dumps({"results": {"zzz": []}}))
    assert main(["eval", "--gt", str(gt), "--split", "validation", str(none)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none of the 1 result videos" in err
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"results": {"v1": [{"segment": [0, 10], "score": 0.9, "label": 0}], "zzz": []}}))
    assert main(["eval", "--gt", str(gt), "--split", "validation", str(part)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mse-rt: warning: 1 videos scored: 1 of the 2 result videos")


def test_predictions_of_classes_outside_the_ground_truth():
    """Every prediction's class unknown to the ground truth: an error naming both label sets (not a
    silent 0.00); some of them: a warning with the count, and they are ignored."""
    gt = {"database": {"v": {"subset": "test", "annotations": [{"segment": [1.0, 3.0], "label_id": 0},
                                                              {"segment": [5.0, 7.0], "label_id": 1}]}}}
    bad = {"results": {"v": [{"segment": [1.0, 3.0], "score": 0.9, "label": 99}]}}
    with pytest.raises(InputError, match=r"no prediction has a class of the ground truth: result labels e\.g\. 99, "
                                         r"ground-truth classes 0\.\.1"):
        evaluate(bad, gt, [0.5])
    some = {"results": {"v": [{"segment": [1.0, 3.0], "score": 0.9, "label": 0},
                              {"segment": [5.0, 7.0], "score": 0.8, "label": 7}]}}
    with pytest.warns(UserWarning, match="1 of 2 predictions have classes the ground truth does not hold"):
        r = evaluate(some, gt, [0.5])
    assert r.average == pytest.approx(0.5) and "ignored" in r.unmatched  # class 0 found, class 1 missed
    # a class inside the truth's range that only other videos would hold: an ordinary false
    # positive of a subset, counted but not warned
    gap = {"database": {"v": {"subset": "test", "annotations": [{"segment": [1.0, 3.0], "label_id": 0},
                                                               {"segment": [5.0, 7.0], "label_id": 2}]}}}
    fp = {"results": {"v": [{"segment": [1.0, 3.0], "score": 0.9, "label": 0},
                            {"segment": [5.0, 7.0], "score": 0.8, "label": 1}]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate(fp, gap, [0.5])
    assert "1 of 2 predictions" in r.unmatched and r.average == pytest.approx(0.5)
