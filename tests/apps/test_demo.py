"""The bundled demo: the trained model reaches mAP >= 0.7 on its held-out videos, identically on
every CPU backend; `mse-rt demo` prints the table and writes the PNG."""

from __future__ import annotations

import numpy as np
import pytest

import mse_rt
from mse_rt.apps.demo import DEMO, DEMO_CKPT, DEMO_CONFIG, available_backends
from mse_rt.cli import main
from mse_rt.eval import THUMOS_TIOUS, evaluate
from mse_rt.io.dataset import read_dataset


@pytest.fixture(scope="module")
def held_out():
    return read_dataset(DEMO, subset="validation")


@pytest.mark.slow
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


@pytest.mark.slow
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
