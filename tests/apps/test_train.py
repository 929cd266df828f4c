"""Training (docs/spec/training.md): units, label assignment and losses by hand, a short run lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mse_rt
from mse_rt.apps.demo import DEMO_CONFIG
from mse_rt.apps.synth import SyntheticSpec
from mse_rt.apps.train import assign_labels, diou_loss_1d, iou_1d, make_points
from mse_rt.io.dataset import read_dataset
from mse_rt.pipeline.segments import seconds_to_steps


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


@pytest.mark.slow
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
