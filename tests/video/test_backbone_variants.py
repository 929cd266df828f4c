"""`mse-rt benchmark --backbone` and `mse-rt compare --backbone`: the video backbone's variants timed
and compared with eager, the agreement figures checked against a float64 computation, bad flags refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mse_rt.apps.backbone_variants import compare_backbones
from mse_rt.cli import main


class _Fixed:
    """A backbone stand-in whose outputs are given arrays (features (N, C), logits (N, K))."""

    def __init__(self, feats, logits):
        self.f, self.lg = feats, logits
        self.num_classes = logits.shape[1]

    def features_and_logits(self, clips):
        return self.f, self.lg

    def features(self, clips):
        return self.f


def test_agreement_figures_equal_a_float64_computation():
    rng = np.random.default_rng(0)
    ref_f, ref_l = rng.standard_normal((5, 7)), rng.standard_normal((5, 11))
    f = ref_f + 0.1 * rng.standard_normal((5, 7))
    lg = ref_l.copy()
    lg[0, np.argsort(-lg[0])[4]] = -100.0  # clip 0: one of the reference top-5 drops out
    lg[1] = lg[1][::-1]  # clip 1: another ranking
    (row,) = compare_backbones("ref", {"ref": _Fixed(ref_f.astype(np.float32), ref_l.astype(np.float32)),
                                       "x": _Fixed(f.astype(np.float32), lg.astype(np.float32))}, np.zeros((5, 1)))
    f32, r32 = f.astype(np.float32).astype(np.float64), ref_f.astype(np.float32).astype(np.float64)
    cos = [a @ b / np.sqrt(a @ a) / np.sqrt(b @ b) for a, b in zip(f32, r32)]
    top5 = [len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) / 5 for a, b in zip(lg, ref_l)]
    top1 = [np.argmax(a) == np.argmax(b) for a, b in zip(lg, ref_l)]
    assert row.variant == "x" and row.clips == 5
    assert row.feature_max_abs == pytest.approx(np.abs(f32 - r32).max(), rel=1e-6)
    assert row.cosine_mean == pytest.approx(np.mean(cos), rel=1e-9) and row.cosine_min == pytest.approx(min(cos))
    assert row.top5_agreement == pytest.approx(np.mean(top5)) and top5[0] == 0.8
    assert row.top1_agreement == pytest.approx(np.mean(top1)) and row.top1_agreement < 1


@pytest.mark.slow
def test_cli_benchmark_and_compare_the_backbone(onnx_224, video_cache, tmp_path, monkeypatch, capsys):
    """eager and ONNX Runtime fp32 at 16 x 224 x 224: a timing row each (JSON and table), and ONNX
    Runtime within the 1e-4 fp32 tolerance of eager with identical top-5 classes."""
    monkeypatch.setenv("MSE_RT_CACHE", str(video_cache))  # the session's converted weights and export
    out = tmp_path / "b.json"
    assert main(["benchmark", "--backbone", "i3d-rgb", "--variants", "eager", "onnxruntime", "--B", "1",
                 "--repeat", "1", "--warmup", "0", "--threads", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["eager", "onnxruntime"] and all(r["clips_per_s"] > 0 for r in rows)
    assert "| eager | 1 |" in table and "| onnxruntime | 1 |" in table
    assert main(["compare", "--backbone", "i3d-rgb", "--variants", "onnxruntime", "--clips", "2",
                 "--threads", "1"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| onnxruntime |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "2" and float(cells[2]) <= 1e-4 and float(cells[4]) > 0.99999 and cells[5] == "100.0 %"


@pytest.mark.parametrize(("argv", "message"), [
    (["benchmark", "--backbone", "i3d-rgb", "--config", "c.yaml"], "drop --config"),
    (["benchmark", "--backbone", "i3d-rgb", "--variants", "onnxruntime-int8"], "unknown backbone variant"),
    (["compare", "--backbone", "i3d-rgb", "--variants", "eager"], "besides the reference"),
    (["compare", "--backbone", "nope", "--variants", "bogus"], "unknown backbone 'nope'; registered: i3d-rgb"),
    (["benchmark", "--backbone", "i3d-rgb", "--T", "64"], "drop --T"),
    (["benchmark"], "--config is required"),
    (["compare", "--variants", "onnxruntime", "f.npy"], "--config is required"),
    (["compare", "--config", "c.yaml", "--ckpt", "k.pth", "--variants", "tensorrt-fp16", "f.npy"],
     "unknown TAD variant"),
    (["compare", "--config", "c.yaml", "--ckpt", "k.pth", "--reference", "nope", "--variants", "onnxruntime",
      "f.npy"], "unknown TAD variant"),
])
def test_bad_backbone_and_variant_flags_are_refused(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
