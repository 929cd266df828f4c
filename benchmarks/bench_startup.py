"""Start-up time of every CPU variant: from the start of ``Detector`` construction to the first result.

    python benchmarks/bench_startup.py [--threads 2] [--T 2304] [--calib-videos 4] [--out DIR]

THUMOS-size model (mse_rt/assets/configs/thumos_i3d.yaml, random weights saved once as a
checkpoint), one video of T steps. Each variant runs in a fresh process of its own, twice: cold
(an empty mse_rt cache folder, ``MSE_RT_CACHE``: no export, no compiled blobs) and warm (a second
process on the cache the first one filled). Timed: construction (loading the model file, or
exporting / quantizing from the checkpoint when the cache is empty) plus the first ``detect`` call
(compiling that input shape, then one forward pass, decode and NMS). The operating system's file
cache is warm in both (the files were just written); the Python import of mse_rt is timed apart.

Variants and where they load from:

- eager fp32: the checkpoint;
- onnxruntime fp32: ``from_checkpoint`` (cold: ONNX export into the cache; warm: the cached file);
- onnxruntime int8: a saved QDQ file (``mse-rt quantize``);
- openvino fp32 / bf16 / int8: a saved IR (``mse-rt quantize --engine openvino``); fp32 uses
  OpenVINO's compiled-blob cache (cold: compile and store; warm: load the blob); bf16 / int8 on
  a BF16 CPU compile at every start (a cached blob would lose the bf16 body marks);
- openvino fp32 from checkpoint: the cached ONNX read by OpenVINO (graph rewrite + compile);
- openvino int8 from checkpoint: cold exports and calibrates (``--calib-videos`` random videos,
  fast bias correction) into the cache; warm loads the cached IR.

The saved int8 files are calibrated here on random features with fast bias correction (start-up
does not depend on the calibration data). Prints the markdown table and the JSON of all runs;
``--out DIR`` writes DIR/startup.md / .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_PROCESS = time.perf_counter()

from harness import THUMOS_CONFIG, Report, add_out_argument, use_source_tree  # noqa: E402

VARIANTS = {
    "eager fp32": "checkpoint",
    "onnxruntime fp32": "checkpoint (export cache)",
    "onnxruntime int8": "saved QDQ .onnx",
    "openvino fp32": "saved IR (+ compiled-blob cache)",
    "openvino bf16": "saved IR",
    "openvino int8": "saved IR",
    "openvino fp32 (checkpoint)": "checkpoint (export cache: ONNX)",
    "openvino int8 (checkpoint)": "checkpoint (export cache: int8 IR)",
}


def child(args: argparse.Namespace) -> None:
    """One variant in this fresh process: import, construct, first result; prints one JSON line."""
    t0 = time.perf_counter()
    use_source_tree()
    import numpy as np
    import torch

    import mse_rt

    import_s = time.perf_counter() - t0
    work, v, threads = Path(args.work), args.child, args.threads
    torch.set_num_threads(threads if v == "eager fp32" else 1)  # torch only decodes for the others
    video = np.load(work / "video.npy")
    cfg, ckpt = str(THUMOS_CONFIG), str(work / "ckpt.pth.tar")
    t1, c1 = time.perf_counter(), time.process_time()
    if v == "eager fp32":
        det = mse_rt.Detector.from_checkpoint(cfg, ckpt)
    elif v == "onnxruntime fp32":
        det = mse_rt.Detector.from_checkpoint(cfg, ckpt, backend="onnxruntime",
                                              backend_options={"intra_op_threads": threads})
    elif v == "onnxruntime int8":
        det = mse_rt.Detector.from_file(work / "int8.onnx", intra_op_threads=threads)
    elif v.startswith("openvino") and "checkpoint" not in v:
        det = mse_rt.Detector.from_file(work / f"{v.split()[1]}.xml", threads=threads)
    elif v == "openvino fp32 (checkpoint)":
        det = mse_rt.Detector.from_checkpoint(cfg, ckpt, backend="openvino",
                                              backend_options={"precision": "fp32", "threads": threads})
    else:
        det = mse_rt.Detector.from_checkpoint(cfg, ckpt, backend="openvino", backend_options={
            "precision": "int8", "calib": [work / "calib"], "calib_videos": args.calib_videos, "threads": threads})
    t2 = time.perf_counter()
    r = det.detect(video, fps=30.0)
    t3, c3 = time.perf_counter(), time.process_time()
    # CPU seconds (all threads) of the same span, and the machine's load: wall times on a busy machine mislead
    print(json.dumps({"import_s": import_s, "construct_s": t2 - t1, "first_detect_s": t3 - t2,
                      "first_result_s": t3 - t1, "cpu_s": c3 - c1, "load_1min": os.getloadavg()[0],
                      "detections": len(r), "process_s": t3 - T_PROCESS,
                      "backend": det.backend.name, "describe": getattr(det.backend, "describe", lambda: "")()}))


def setup(work: Path, T: int, calib_videos: int) -> None:
    """Random-weight checkpoint, the fp32 ONNX, the saved int8 QDQ file, the fp32 / bf16 / int8 IRs,
    calibration features and the video (once)."""
    import numpy as np
    import torch

    from mse_rt import load_config
    from mse_rt.export import export_onnx
    from mse_rt.export.openvino import quantize_openvino
    from mse_rt.export.quantize import quantize_onnx
    from mse_rt.model import build_random_model

    cfg = load_config(THUMOS_CONFIG)
    C = cfg["model"]["input_dim"]
    rng = np.random.default_rng(0)
    torch.save({"state_dict_ema": build_random_model(cfg).state_dict()}, work / "ckpt.pth.tar")
    np.save(work / "video.npy", rng.standard_normal((T, C)).astype(np.float32))
    (work / "calib").mkdir()
    for i in range(calib_videos):
        n = int(T * (i + 1) / calib_videos)
        np.save(work / "calib" / f"c{i}.npy", rng.standard_normal((n, C)).astype(np.float32))
    onnx = export_onnx((THUMOS_CONFIG, work / "ckpt.pth.tar"), work / "fp32.onnx", validate=False)
    quantize_onnx(onnx, work / "int8.onnx", [work / "calib"], max_videos=calib_videos)
    for precision in ("fp32", "bf16"):
        quantize_openvino(onnx, work / f"{precision}.xml", precision=precision)
    quantize_openvino(onnx, work / "int8.xml", [work / "calib"], max_videos=calib_videos, bias_correction="fast")


def run_child(work: Path, cache: Path, variant: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "MSE_RT_CACHE": str(cache), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, __file__, "--child", variant, "--work", str(work), "--threads", str(args.threads),
           "--calib-videos", str(args.calib_videos)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant}: child failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--T", type=int, default=2304, help="length of the one video (feature steps)")
    ap.add_argument("--calib-videos", type=int, default=4, help="random calibration videos of the int8 models")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT")
    ap.add_argument("--work", help="reuse a folder set up by an earlier run (checkpoint, saved files)")
    ap.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return {}
    use_source_tree()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mse_rt_startup_"))
    if not (work / "int8.xml").is_file():
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        setup(work, args.T, args.calib_videos)
        print(f"setup (checkpoint, ONNX, saved int8 / float files) in {time.perf_counter() - t0:.0f} s: {work}",
              flush=True)
    report = Report("startup", args.out, title="Start-up: Detector construction to the first result")
    report.note(f"THUMOS size (thumos_i3d.yaml, random weights), one video of T = {args.T} steps, {args.threads} "
                "threads, each run in a fresh process; cold: empty mse_rt cache (MSE_RT_CACHE), warm: a second "
                "process on the cache the first filled. Seconds from the start of construction to the first result "
                "(construction + first detect, which compiles the shape); the import of mse_rt is timed apart. "
                "CPU s: CPU seconds of all the process's threads over the same span; load: the machine's 1-minute "
                "load average at the end of the warm run (wall times are only meaningful on an idle machine).")
    cols = ["cold s", "warm s", "warm: construct s", "warm: first detect s", "warm: CPU s", "import s", "load"]
    table = report.table("Start-up per CPU variant", ["variant", "loads from", *cols],
                         formats={c: ".2f" for c in cols})
    runs = {}
    for v in args.variants:
        cache = Path(tempfile.mkdtemp(prefix="cache_", dir=work))
        cold = run_child(work, cache, v, args)
        warm = run_child(work, cache, v, args)
        runs[v] = {"cold": cold, "warm": warm}
        table.add(v, VARIANTS[v], cold["first_result_s"], warm["first_result_s"], warm["construct_s"],
                  warm["first_detect_s"], warm["cpu_s"], warm["import_s"], warm["load_1min"])
    report.data["runs"] = runs
    report.data["args"] = {"threads": args.threads, "T": args.T, "calib_videos": args.calib_videos}
    report.write()
    slow = [v for v, r in runs.items() if r["warm"]["first_result_s"] > 5.0]
    report.note("Every variant starts warm in <= 5 s." if not slow else f"Warm start over 5 s: {', '.join(slow)}.")
    print(json.dumps(runs, indent=1))
    return runs


if __name__ == "__main__":
    main()
