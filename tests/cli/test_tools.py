"""The other commands: option checks (export, train, synth, check-onnx), benchmark and compare."""

from __future__ import annotations

import json

import pytest

from mse_rt.apps.demo import DEMO, DEMO_CKPT, DEMO_CONFIG
from mse_rt.cli import main

from golden_utils import GOLDEN

CFG = str(GOLDEN / "thumos_small" / "config.yaml")
CKPT = str(GOLDEN / "thumos_small" / "ckpt.pth.tar")


@pytest.mark.parametrize("argv", [["synth", "--out", "X", "--videos", "-3"], ["synth", "--out", "X", "--videos", "0"],
                                  ["train", "--config", "c", "--data", "d", "--out", "o", "--epochs", "0"],
                                  ["export", "--config", "c", "--ckpt", "k", "-o", "o", "--max-batch", "0"]])
def test_other_numeric_options_are_validated(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_export_onto_a_directory(tmp_path, capsys):
    assert main(["export", "--config", CFG, "--ckpt", CKPT, "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_train_with_missing_data_folder(tmp_path, capsys):
    rc = main(["train", "--config", CFG, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "c.pth")])
    assert rc == 2
    assert "no annotations.json" in capsys.readouterr().err


def test_check_onnx_on_an_empty_file(tmp_path, capsys):
    pytest.importorskip("onnx")
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    assert main(["check-onnx", str(p)]) == 2
    assert "holds no ONNX graph" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_writes_json_and_markdown(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    j, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["benchmark", "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT), "--variants", "eager",
                 "onnxruntime", "--T", "256", "--B", "1", "2", "--repeat", "2", "--warmup", "1", "--json", str(j),
                 "--md", str(md)]) == 0
    res = json.loads(j.read_text())
    assert {(r["variant"], r["B"]) for r in res["rows"]} == {("eager", 1), ("eager", 2), ("onnxruntime", 1),
                                                              ("onnxruntime", 2)}
    assert all(r["ms_median"] > 0 and r["gflop_per_video"] > 0 for r in res["rows"])
    assert "GFLOP/s" in md.read_text() and "fp32 GEMM peak" in capsys.readouterr().out
    assert res["gemm_peaks_gops"]["fp32"] > 0 and all(r["precision"] == "fp32" for r in res["rows"])


def test_gemm_peaks_are_measured_per_precision():
    from mse_rt.apps.benchmark import gemm_peak, variant_precision

    assert [variant_precision(v) for v in ("eager", "openvino-bf16", "onnxruntime-int8", "openvino-fp32")] == \
        ["fp32", "bf16", "int8", "fp32"]
    for prec in ("fp32", "bf16", "int8"):
        peak = gemm_peak(prec, n=256, repeat=2)
        assert peak is None or peak > 0.1, (prec, peak)
    with pytest.raises(ValueError, match="precision"):
        gemm_peak("fp8")


@pytest.mark.slow
def test_compare_with_ground_truth(capsys):
    pytest.importorskip("onnxruntime")
    assert main(["compare", "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT), "--variants", "onnxruntime",
                 "--gt", str(DEMO / "annotations.json"), "--split", "validation", str(DEMO / "features")]) == 0
    out = capsys.readouterr().out
    assert "top-10 matched 100.0 %" in out and out.count("mAP 84.90") == 2  # fp32 ONNX == eager


def test_int8_variants_need_calibration(capsys):
    pytest.importorskip("onnxruntime")
    assert main(["compare", str(DEMO / "features"), "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT),
                 "--variants", "onnxruntime-int8"]) == 2
    assert "need calibration feature files" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 24: ranges, early checks, corrupt files
@pytest.mark.parametrize("command", ["detect", "stream", "compare"])
@pytest.mark.parametrize("fps", ["1e-320", "1e-40", "1e300", "0", "nan", "inf"])
def test_fps_out_of_range_is_a_usage_error(command, fps, capsys):
    extra = ["--config", CFG, "--ckpt", CFG, "--variants", "onnxruntime"] if command == "compare" else []
    with pytest.raises(SystemExit) as e:
        main([command, "--fps", fps, *extra, "x.npy"])
    assert e.value.code == 2
    assert "expected a frame rate (frames per second) in [0.001, 10000]" in capsys.readouterr().err


@pytest.mark.parametrize("T", ["1025", "200000"])
def test_benchmark_lengths_beyond_the_longest_video_are_refused(T, capsys):
    """1025 used to fail deep inside with a size mismatch, 200000 tried to allocate 640 GB."""
    assert main(["benchmark", "--config", str(DEMO_CONFIG), "--variants", "eager", "--T", T]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"T = {T}: benchmark lengths are video lengths in feature steps, 1 to 1024 for this config" in err


def test_benchmark_runs_a_length_between_padded_lengths(tmp_path):
    """T = 300 on the demo config (max_seq_len 256, padding multiple 32) runs at the padded 320."""
    from mse_rt.apps.benchmark import network_gflop, run_benchmark
    from mse_rt.model import build_random_model

    res = run_benchmark(["eager"], DEMO_CONFIG, Ts=[300], Bs=[1], warmup=0, repeat=1)
    (row,) = res["rows"]
    assert row["T"] == 300 and row["T_padded"] == 320
    model = build_random_model(__import__("mse_rt").load_config(DEMO_CONFIG))
    assert row["gflop_per_video"] == pytest.approx(network_gflop(model, 320))


def test_compare_checks_the_ground_truth_before_building_variants(tmp_path, capsys, monkeypatch):
    import mse_rt.apps.variants as variants

    def never(*a, **k):
        raise AssertionError("variants were built before the ground truth was checked")

    monkeypatch.setattr(variants, "build_variants", never)
    assert main(["compare", "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT), "--variants", "onnxruntime",
                 "--gt", str(tmp_path / "missing.json"), str(DEMO / "features")]) == 2
    assert "ground truth file not found" in capsys.readouterr().err


def test_check_onnx_calls_a_corrupt_file_corrupt(onnx_files, tmp_path, capsys):
    src = onnx_files["thumos_small"].read_bytes()
    bad = tmp_path / "bad.onnx"
    i = len(src) // 2  # inside the weights: the file still parses as ONNX
    bad.write_bytes(src[:i] + bytes(b ^ 0x10 for b in src[i:i + 8]) + src[i + 8:])
    assert main(["check-onnx", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT file (integrity checksum mismatch)" in out and "corrupt ONNX file: sha256" in out
    assert main(["check-onnx", str(onnx_files["thumos_small"])]) == 0
    assert "compatible with TensorRT 10" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary\x00\x01", b"dataset: {\n", b"a: 1\n\x00\x02"])
def test_unreadable_config_is_a_config_error(tmp_path, content, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(content)
    assert main(["detect", "--config", str(cfg), "--ckpt", CKPT, "--fps", "30", "-o", str(tmp_path / "r.json"),
                 str(DEMO / "features")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"config file {cfg}" in err


def test_benchmark_reports_never_overwrite_an_input(tmp_path, capsys):
    """--json / --md onto the config, the checkpoint, a calibration file (also inside a folder,
    also through a link) or onto each other: refused before any work, every input byte-identical."""
    import hashlib
    import shutil

    cfg, ckpt = tmp_path / "c.yaml", tmp_path / "k.pth.tar"
    shutil.copyfile(CFG, cfg)
    shutil.copyfile(CKPT, ckpt)
    calib = tmp_path / "calib"
    calib.mkdir()
    feat = calib / "v.npy"
    feat.write_bytes(b"not read")
    (tmp_path / "link.json").symlink_to(ckpt)

    def digests():
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in (cfg, ckpt, feat)]

    before = digests()
    base = ["benchmark", "--config", str(cfg), "--ckpt", str(ckpt), "--T", "64", "--B", "1", "--repeat", "1",
            "--warmup", "0", "--calib", str(calib)]
    for extra, match in ((["--json", str(cfg)], "benchmark report .*c.yaml is one of the inputs"),
                         (["--md", str(ckpt)], "is one of the inputs"),
                         (["--json", str(tmp_path / "link.json")], "is one of the inputs"),
                         (["--md", str(feat)], "is one of the inputs"),
                         (["--json", str(tmp_path / "r"), "--md", str(tmp_path / "r")], "name the same file")):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "mse-rt: error:" in err and __import__("re").search(match, err), err
    assert digests() == before


@pytest.mark.parametrize("flag", [["--B", "65"], ["--B", "1000000"]])
def test_benchmark_batch_is_bounded(flag, capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--config", CFG, *flag])
    assert "expected an integer in [1, 64]" in capsys.readouterr().err


@pytest.mark.parametrize(("backend", "options", "match"), [
    ("onnxruntime", 5, "backend_options must be a dict"),
    ("onnxruntime", {"threads": -1}, r"backend_options \['threads'\] are not options of backend='onnxruntime'; known: "
                                     r".*intra_op_threads"),
    ("eager", {"threads": 1}, "backend='eager' takes no backend_options"),
])
def test_backend_options_are_checked(backend, options, match):
    import mse_rt
    from mse_rt import BackendError

    with pytest.raises(BackendError, match=match):
        mse_rt.Detector.from_checkpoint(CFG, CKPT, backend=backend, backend_options=options)
