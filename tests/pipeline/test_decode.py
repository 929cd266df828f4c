"""The dense decode (graph + decode_dense, used by every backend) against the sparse per-candidate
decode (decode_batch, a direct transcription of docs/spec/decode.md)."""

from __future__ import annotations

import pytest
import torch
import yaml

from mse_rt import build_model, load_checkpoint, load_config
from mse_rt.config import finalize_config, fpn_strides
from mse_rt.model.detector_graph import DetectorGraph, level_lengths
from mse_rt.pipeline.decode import decode_batch, decode_dense
from mse_rt.pipeline.padding import make_mask

from golden_utils import GOLDEN, match_detections


def _compare(cfg, model, x, lengths):
    graph = DetectorGraph(model).eval()
    with torch.inference_mode():
        dense = graph(x, lengths)
        out = model(x, make_mask(lengths, x.shape[-1]))
    m = cfg["model"]
    a = decode_dense(*dense, level_lengths(x.shape[-1], fpn_strides(cfg)), cfg["test_cfg"])
    b = decode_batch(out, fpn_strides(cfg), cfg["test_cfg"], m["num_bins"], m["use_trident_head"])
    assert len(a) == len(b) == x.shape[0]
    for i, (ca, cb) in enumerate(zip(a, b)):
        assert len(ca.scores) > 0
        match_detections(ca.segments.numpy(), ca.scores.numpy(), ca.labels.numpy(), cb.segments.numpy(),
                         cb.scores.numpy(), cb.labels.numpy(), f"video {i}", score_tol=1e-6, seg_tol=1e-4)


@pytest.mark.parametrize("name", ["thumos_small", "anet_small"])
def test_dense_equals_sparse_golden_weights(name):
    cfg = load_config(GOLDEN / name / "config.yaml")
    model = build_model(cfg)
    load_checkpoint(model, GOLDEN / name / "ckpt.pth.tar")
    T = cfg["model"]["max_seq_len"]
    x = torch.randn(2, cfg["model"]["input_dim"], T, generator=torch.Generator().manual_seed(0))
    _compare(cfg, model, x, torch.tensor([T, T // 3]))


def test_dense_equals_sparse_without_trident_head():
    data = yaml.safe_load((GOLDEN / "thumos_small" / "config.yaml").read_text())
    data["model"]["use_trident_head"] = False
    cfg = finalize_config(data)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # bias the regression so segments are long enough to survive
        model.reg_head.offset_head.conv.bias.fill_(2.0)
    x = torch.randn(1, 64, 256)
    _compare(cfg, model, x, torch.tensor([200]))


def test_decode_dense_checks_levels():
    with pytest.raises(ValueError, match="do not add up"):
        decode_dense(torch.zeros(1, 10, 2), torch.zeros(1, 10, 2), torch.zeros(1, 10, 2), [4, 4],
                     {"pre_nms_thresh": 0.1, "pre_nms_topk": 5, "duration_thresh": 0.0})


@pytest.mark.parametrize("path", ["select_topk", "_select_topk_table", "_select_topk_rows"])
@pytest.mark.parametrize("B,ties,thresh", [(1, False, 0.07), (3, True, 0.07), (2, True, 0.07), (2, True, 0.33)])
def test_select_topk_equals_a_full_stable_sort(B, ties, thresh, path):
    """The partial selection (top-k set sorted by index then by value, or with ties across the
    k-th place: k-th value, ties in index order, stable sort of k) against the plain reference:
    per (video, level) row, a full stable descending sort, first k, threshold. Thresholds 0.07
    and 0.33 are not multiples of the 0.05 grid (no float32 vs float64 edge at them); with 0.33
    every k-th value is below it and the top-k path runs with many ties above it. Both
    implementations (the public function takes the row path for these CPU float32 levels)."""
    from mse_rt.pipeline import decode

    select_topk = getattr(decode, path)

    g = torch.Generator().manual_seed(B)
    levels = [torch.sigmoid(torch.randn(B, n * 3, generator=g) - 2) for n in (257, 128, 64, 31, 1)]
    if ties:  # many equal scores, also across the k-th place
        levels = [(p * 20).round() / 20 for p in levels]
    k = 100
    want = {b: [] for b in range(B)}
    for b in range(B):
        for lvl, p in enumerate(levels):
            order = sorted(range(p.shape[1]), key=lambda i: -p[b, i].item())[:k]  # Python's sort is stable
            want[b] += [(lvl, i, p[b, i].item()) for i in order if p[b, i].item() > thresh]
    vid, lvl, idx, val = select_topk(levels, thresh, k)
    got = {b: [] for b in range(B)}
    for v, lv, i, s in zip(vid.tolist(), lvl.tolist(), idx.tolist(), val.tolist()):
        got[v].append((lv, i, s))
    assert got == want
