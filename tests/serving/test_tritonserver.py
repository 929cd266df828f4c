"""The model repository served end to end by a real tritonserver: PyTriton's bundled server
(Linux x86-64; ``make test`` installs it with ``pip install --no-deps nvidia-pytriton``), bound to
127.0.0.1. It has the Python backend but no ONNX Runtime backend, so the repository is exported
with ``net_backend="python"``: the ensemble (network on ONNX Runtime inside the Python backend,
then decode + NMS) must give the golden detections; a stopped server gives a clear error."""

from __future__ import annotations

import pytest
import torch

from mse_rt import BackendError
from mse_rt.export.tritonserver_repo import export_triton_repo
from mse_rt.pipeline.padding import pad_batch
from mse_rt.serving.tritonserver import find_bundled_tritonserver, local_tritonserver, triton_detect

from golden_utils import GOLDEN, golden_videos, match_detections

pytest.importorskip("onnxruntime")
pytest.importorskip("tritonclient.grpc")
NAME = "thumos_small"
SERVER = find_bundled_tritonserver()
pytestmark = [pytest.mark.slow,  # a tritonserver process
              pytest.mark.skipif(SERVER is None, reason="no bundled tritonserver (pip install --no-deps nvidia-pytriton)")]


def test_ensemble_on_tritonserver_gives_golden_detections(tmp_path):
    repo = export_triton_repo((GOLDEN / NAME / "config.yaml", GOLDEN / NAME / "ckpt.pth.tar"), tmp_path / "repo",
                              max_batch=2, net_backend="python")
    vids = golden_videos(NAME)
    with local_tritonserver(repo) as server:
        assert server.grpc_url.startswith("127.0.0.1:")
        for v in vids:
            z = v["data"]
            x, lens = pad_batch([torch.from_numpy(z["feats"])], int(z["padded_len"]))  # the client pads
            segs, scores, labels = triton_detect(server.grpc_url, x[0].numpy(), int(lens[0]), float(z["fps"]))
            match_detections(segs, scores, labels, z["det_segments_sec"], z["det_scores"], z["det_labels"],
                             f"tritonserver {v['video_id']}")
        url = server.grpc_url
    with pytest.raises(BackendError, match="failed the request"):  # server down
        triton_detect(url, x[0].numpy(), int(lens[0]), float(z["fps"]), timeout_s=5)
