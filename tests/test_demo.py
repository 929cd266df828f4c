"""The bundled demo: the trained model reaches mAP >= 0.7 on its held-out videos, identically on
every CPU backend; `mse-rt demo` prints the table and writes the PNG; training code is sound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mse_rt
from mse_rt.apps.demo import DEMO, DEMO_CKPT, DEMO_CONFIG, available_backends
from mse_rt.apps.synth import SyntheticSpec
from mse_rt.apps.train import assign_labels, diou_loss_1d, iou_1d, make_points
from mse_rt.cli import main
from mse_rt.eval import THUMOS_TIOUS, evaluate
from mse_rt.io.dataset import read_dataset
from mse_rt.pipeline.segments import seconds_to_steps


@pytest.fixture(scope="module")
def held_out():
    return read_dataset(DEMO, subset="validation")


def test_demo_model_map_on_every_cpu_backend(held_out, tmp_path_factory):
    scores = {}
    for backend, why in available_backends().items():
        if why or backend in ("triton", "tensorrt"):  # CPU backends here
            continue
        det = mse_rt.Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, backend=backend,
                                              cache_dir=tmp_path_factory.mktemp(backend))
        rs = det.detect_batch([v["feats"] for v in held_out], fps=30.0, video_ids=[v["video_id"] for v in held_out])
        scores[backend] = evaluate(rs, DEMO / "annotations.json", THUMOS_TIOUS)
    assert "eager" in scores and len(scores) >= 2, f"need eager and onnxruntime here, got {list(scores)}"
    for backend, ev in scores.items():
        assert ev.average >= 0.7, f"{backend}: demo mAP {ev.average:.3f} < 0.7"
        np.testing.assert_allclose(ev.mAP, scores["eager"].mAP, atol=1e-3, err_msg=backend)


def test_demo_command(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "avg mAP" in out and "eager" in out
    from mse_rt.apps.variants import available_variants

    for variant, why in available_variants().items():  # every CPU precision this machine has, or why not
        assert variant in out, f"{variant} missing from the demo output"
        if why:
            assert why in out
    png = (tmp_path / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert (tmp_path / "results_eager.json").is_file()


def test_seconds_steps_round_trip():
    spec = SyntheticSpec()
    x = np.array([0.0, 3.5, 100.0])
    np.testing.assert_allclose(seconds_to_steps(spec.seconds(x), spec.fps, spec.feat_stride,
                                                spec.num_frames), x)


def test_label_assignment_by_hand():
    """One segment [10, 14] at level 0 (stride 1, range 0-4): points 11, 12, 13 inside the centre
    region (12 +- 1.5) with max distance <= 4 are positive; targets (t - 10, 14 - t)."""
    cfg = mse_rt.load_config(DEMO_CONFIG)
    pts = make_points(cfg, 256)
    cls, reg = assign_labels(pts, torch.tensor([[10.0, 14.0]]), torch.tensor([2]), 4, 1.5)
    pos = torch.nonzero(cls.sum(1) > 0)[:, 0].tolist()
    assert pos == [11, 12, 13]
    assert cls[12].tolist() == [0, 0, 1, 0]
    assert reg[11].tolist() == [1.0, 3.0]


def test_iou_and_diou_float64():
    p = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 5.0]], dtype=torch.float64)
    # segments [-2, 3] and [-1, 5]: inter 4, union 7; enclosing 7, centre offset (0.5 - 2) = -1.5
    assert iou_1d(p, t).item() == pytest.approx(4 / 7)
    assert diou_loss_1d(p, t).item() == pytest.approx(1 - 4 / 7 + (1.5 / 7) ** 2)


def test_training_reduces_the_loss(tmp_path):
    """A few steps on synthetic data: the loss drops and the checkpoint loads back strictly."""
    from mse_rt.apps.synth import write_dataset
    from mse_rt.apps.train import TrainOptions, train

    cfg = mse_rt.load_config(DEMO_CONFIG)
    videos = read_dataset(write_dataset(tmp_path / "d", 8, seed=5))
    losses = []
    train(cfg, videos, TrainOptions(epochs=6, batch_size=4, seed=1, log_every=1), out_path=tmp_path / "c.pth",
          log=lambda msg: losses.append(float(msg.split("loss ")[1].split()[0])) if "loss " in msg else None)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    model = mse_rt.build_model(cfg)
    mse_rt.load_checkpoint(model, tmp_path / "c.pth")
