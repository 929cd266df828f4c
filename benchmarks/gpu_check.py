# ruff: noqa: B023  (timing lambdas are called at once, inside their loop iteration)
"""One-call GPU check for the device machine: correctness first, then timings, one table.

    python benchmarks/gpu_check.py [--out DIR] [--budget 300] [--full]
    python benchmarks/gpu_check.py --dry-run      # on a CPU: imports, plan and budget, report writing

Writes DIR/gpu_check.md and .json (DIR defaults to $OUT, else ./gpu_check_out; the
benchmarks' harness report: one table per section) after every row, so a kill keeps what
finished, and prints each row as it comes. The default run is
planned to fit ``--budget`` seconds (300, THUMOS size; the device allows 600 per call): a section
whose estimate no longer fits is skipped with a row saying so. ``--full`` adds torch.compile (one
compile: B = 1 only), bf16 and more iterations. Sections:
1. correctness on the GPU: Triton kernels vs PyTorch references (odd and THUMOS shapes, fp32 /
   fp16 / bf16), batched GPU NMS vs the C++ NMS on golden/nms.npz, the triton backend vs eager on
   the golden videos (detections) and on a THUMOS-size input (dense outputs), fp16 / bf16 cost;
2. per-kernel time and achieved GB/s against a measured device-to-device copy;
3. end to end, THUMOS-size model (thumos_i3d.yaml, random weights): latency B = 1, T = 2304 and
   throughput B = 8 for eager fp32, eager + torch.compile, triton fp32 / fp16 (+ CUDA graph);
4. batched NMS, 32 videos x 20 classes x 2000 candidates: GPU vs the CPU NMS, which is timed on
   a sample of videos and scaled (the PyTorch fallback takes minutes for the whole batch);
5. TensorRT rows when the tensorrt package is importable (otherwise stated as skipped).
Targets (H100): fused kernels >= 60% of copy bandwidth; triton >= 3x eager fp32 at B = 1;
GPU NMS >= 10x the CPU NMS on that batch.

On the device machine (no network, its own torch / triton): the package need not be installed;
this script imports mse_rt through ``harness.use_source_tree`` (installed, else the source tree
with kernels/ and export/ mapped in as mse_rt.kernels / mse_rt.export). The golden vectors (tests/data/golden)
and configs (mse_rt/assets/configs) are part of the tree and travel with it. Without the compiled C++
NMS the CPU baselines use the PyTorch NMS, and the table says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from harness import CONFIGS, REPO, Report, add_out_argument, use_source_tree

GOLDEN = Path(os.environ.get("MSE_RT_GOLDEN", REPO / "tests" / "data" / "golden"))  # vendored reference vectors
REPORT = Report("gpu_check", None)  # replaced in main() by the one that writes to --out


def cpu_nms():
    """The CPU NMS baseline: C++ when built, else the PyTorch reference (named in the table)."""
    from mse_rt.pipeline.nms import batched_nms_native, batched_nms_torch, native_available

    return (batched_nms_native, "C++") if native_available() else (batched_nms_torch, "PyTorch (C++ not built)")


def row(*cells) -> None:
    """A row of the current section's table (printed, and the report rewritten)."""
    REPORT.tables[-1].add(*cells)


def section(title: str, header: tuple) -> None:
    REPORT.table(title, header)


def cuda_time(fn, iters: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of fn() on the GPU (CUDA events)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def guarded(name: str, fn) -> None:
    started = len(REPORT.tables)
    try:
        fn()
    except Exception as exc:  # keep going: one broken row must not hide the others
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
        if len(REPORT.tables) == started:  # failed before its own table: the error gets one
            section(name, ("row", "result", "error"))
        if len(REPORT.tables[-1].columns) >= 3:
            row(name, "ERROR", error)
        else:
            row(name, f"ERROR: {error}")
        traceback.print_exc()


def thumos_model():
    from mse_rt import load_config
    from mse_rt.model import build_random_model

    cfg = load_config(CONFIGS / "thumos_i3d.yaml")
    return cfg, build_random_model(cfg)


def check_kernels(dtypes) -> None:
    from mse_rt.kernels.afm_residual import afm_residual, afm_residual_ref
    from mse_rt.kernels.channel_layernorm import channel_layernorm, channel_layernorm_ref
    from mse_rt.kernels.ldm_afm import ldm_afm_stage1, ldm_afm_stage1_ref, pack_block_weights
    from mse_rt.model.mse_block import MSEBlock

    section("Kernels vs PyTorch reference (GPU)", ("kernel", "shape", "dtype", "max abs err", "scale", "ok"))
    tol = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}
    for (B, C, T, ks, k) in [(1, 48, 1, 1, 5.0), (2, 80, 37, 15, 1.3), (1, 512, 2304, 1, 5.0), (4, 256, 769, 3, 1.2)]:
        torch.manual_seed(0)
        block = MSEBlock(C, 4, ks, 1, k, 2 * C, path_pdrop=0.1).eval().cuda()
        with torch.no_grad():
            for p in block.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        x32 = torch.randn(B, C, T, device="cuda")
        for dt in dtypes:
            x = x32.to(dt)
            ref_ln = channel_layernorm_ref(x.float(), block.ln.weight, block.ln.bias)
            got = channel_layernorm(x, block.ln.weight, block.ln.bias)
            e, sc = (got.float() - ref_ln).abs().max().item(), max(1.0, ref_ln.abs().max().item())
            row("channel_layernorm", (B, C, T), str(dt).split(".")[-1], f"{e:.2e}", f"{sc:.1f}", e <= tol[dt] * sc)
            packed = pack_block_weights(block)
            out1, mean, rstd = ldm_afm_stage1(x, packed)
            ref1 = ldm_afm_stage1_ref(x.float(), block)
            e, sc = (out1.float() - ref1).abs().max().item(), max(1.0, ref1.abs().max().item())
            row(f"ldm_afm_stage1 ks={ks}", (B, C, T), str(dt).split(".")[-1], f"{e:.2e}", f"{sc:.1f}", e <= tol[dt] * sc)
            mask = (torch.arange(T, device="cuda")[None] < torch.tensor([T] + [max(1, T // 2)] * (B - 1),
                                                                        device="cuda")[:, None]).unsqueeze(1)
            attn = torch.randn_like(out1)
            y = afm_residual(x, out1, attn, mean, rstd, mask, packed, block.drop_path_out.scale)
            ref2 = afm_residual_ref(x.float(), out1.float(), attn.float(), mask, block)
            e, sc = (y.float() - ref2).abs().max().item(), max(1.0, ref2.abs().max().item())
            row("afm_residual", (B, C, T), str(dt).split(".")[-1], f"{e:.2e}", f"{sc:.1f}", e <= tol[dt] * sc)


def check_nms_golden() -> None:
    from mse_rt.kernels.nms_gpu import batched_nms_gpu

    batched_nms_native, cpu_name = cpu_nms()
    section(f"GPU NMS vs {cpu_name} NMS (golden/nms.npz inputs)", ("cases", "mismatches", "ok"))
    z = np.load(GOLDEN / "nms.npz")
    cases = sorted(k[:-7] for k in z.files if k.startswith("batched_") and k.endswith("_params"))
    bad = []
    for c in cases:
        iou, ms, mx, soft, multi, sigma, vote = z[c + "_params"].tolist()
        cfg = {"iou_threshold": iou, "min_score": ms, "max_seg_num": int(mx), "nms_method": "soft" if soft else "hard",
               "multiclass_nms": bool(multi), "nms_sigma": sigma, "voting_thresh": vote}
        s, p, lab = (torch.from_numpy(z[c + k]) for k in ("_segs", "_scores", "_labels"))
        g = batched_nms_gpu([s.cuda()], [p.cuda()], [lab.cuda()], cfg)[0]
        r = batched_nms_native(s, p, lab, iou, ms, int(mx), bool(soft), bool(multi), sigma, vote)
        same_n = len(g[1]) == len(r[1])
        if not same_n or (len(r[1]) and float((g[1].cpu().sort().values - r[1].sort().values).abs().max()) > 1e-5):
            bad.append(c)
    row(len(cases), ", ".join(bad) or "none", not bad)


def check_backend_golden(precisions) -> None:
    import mse_rt
    from mse_rt.parity import golden_videos, match_detections

    section("triton backend vs golden detections", ("config", "precision", "videos", "matched", "note"))
    for name in ("thumos_small", "anet_small"):
        for prec in precisions:
            det = mse_rt.Detector.from_checkpoint(GOLDEN / name / "config.yaml",
                                                  GOLDEN / name / "ckpt.pth.tar", backend="triton",
                                                  device="cuda", backend_options={"precision": prec})
            ok, note = 0, ""
            vids = golden_videos(GOLDEN, name)
            for v in vids:
                z = v["data"]
                r = det.detect(z["feats"].T, fps=float(z["fps"]), duration=float(z["duration"]))
                try:
                    tol = (1e-5, 1e-3) if prec == "fp32" else (5e-3, 5e-2)
                    match_detections(r.segments, r.scores, r.labels, z["det_segments_sec"], z["det_scores"],
                                     z["det_labels"], v["video_id"], *tol)
                    ok += 1
                except AssertionError as exc:
                    note = str(exc)[:120]
            row(name, prec, len(vids), ok, note or ("golden tolerances" if prec == "fp32" else "score 5e-3, segment 5e-2"))


def check_dense_thumos(precisions) -> None:
    from mse_rt.runtime.backends.eager import EagerBackend
    from mse_rt.runtime.backends.triton_kernels import TritonBackend

    section("THUMOS-size dense outputs vs eager fp32 (B=2, T=2304)", ("backend", "cls_prob", "seg_start", "seg_end"))
    cfg, model = thumos_model()
    eager = EagerBackend(cfg, model.cuda(), "cuda")
    x = torch.randn(2, 2048, 2304, device="cuda")
    lengths = torch.tensor([2304, 1500])
    ref = eager.infer(x, lengths)
    for prec in precisions:
        got = TritonBackend(cfg, model, "cuda", prec).infer(x, lengths)
        errs = [float((got[k] - ref[k]).abs().max() / max(1.0, float(ref[k].abs().max()))) for k in ref]
        row(f"triton {prec}", *(f"{e:.2e}" for e in errs))


def bench_kernels() -> None:
    from mse_rt.kernels.afm_residual import afm_residual
    from mse_rt.kernels.channel_layernorm import channel_layernorm
    from mse_rt.kernels.ldm_afm import ldm_afm_stage1, pack_block_weights
    from mse_rt.model.mse_block import MSEBlock

    section("Kernel bandwidth (B=8, C=512, T=2304)", ("op", "dtype", "ms", "GB/s", "% of copy", "bytes model"))
    n = 8 * 512 * 2304
    for dt in (torch.float32, torch.float16):
        src = torch.randn(n, device="cuda", dtype=dt)
        dst = torch.empty_like(src)
        ms = cuda_time(lambda: dst.copy_(src))
        copy_bw = 2 * n * src.element_size() / ms / 1e6
        row("device-to-device copy", str(dt).split(".")[-1], f"{ms:.3f}", f"{copy_bw:.0f}", "100", "read + write")
        block = MSEBlock(512, 4, 1, 1, 5.0, 768, path_pdrop=0.1).eval().cuda().to(dt)
        packed = pack_block_weights(block)
        x = torch.randn(8, 512, 2304, device="cuda", dtype=dt)
        es = x.element_size()
        ms = cuda_time(lambda: channel_layernorm(x, block.ln.weight, block.ln.bias))
        bw = 2 * n * es / ms / 1e6
        row("channel_layernorm", str(dt).split(".")[-1], f"{ms:.3f}", f"{bw:.0f}", f"{100 * bw / copy_bw:.0f}", "1R + 1W")
        ms = cuda_time(lambda: ldm_afm_stage1(x, packed))
        bw = 3 * n * es / ms / 1e6
        row("ldm_afm_stage1 (2 passes)", str(dt).split(".")[-1], f"{ms:.3f}", f"{bw:.0f}", f"{100 * bw / copy_bw:.0f}",
            "2R + 1W")
        out1, mean, rstd = ldm_afm_stage1(x, packed)
        mask = torch.ones(8, 1, 2304, dtype=torch.bool, device="cuda")
        attn = torch.randn_like(x)
        ms = cuda_time(lambda: afm_residual(x, out1, attn, mean, rstd, mask, packed, block.drop_path_out.scale))
        bw = 4 * n * es / ms / 1e6
        row("afm_residual", str(dt).split(".")[-1], f"{ms:.3f}", f"{bw:.0f}", f"{100 * bw / copy_bw:.0f}", "3R + 1W")

        def eager_chain():
            with torch.no_grad():
                out = block.ln(x)
                dw = block.dynamic_weight
                return dw[0] * block.fc(out) * torch.relu(block.global_fc(out.mean(-1, keepdim=True))) + \
                    dw[1] * (block.convw(out) + block.convkw(out)) * block.psi(out) + dw[2] * out
        ms_e = cuda_time(eager_chain)
        row("eager LDM+AFM1 chain (for scale)", str(dt).split(".")[-1], f"{ms_e:.3f}", "", "", "~15 passes")


def bench_end_to_end(full: bool) -> None:
    from mse_rt.runtime.backends.eager import EagerBackend
    from mse_rt.runtime.backends.triton_kernels import TritonBackend

    section("End to end forward + dense decode, THUMOS-size (thumos_i3d.yaml)",
            ("backend", "B=1 T=2304 ms", "vs eager fp32", "B=8 videos/s", "vs eager fp32"))
    cfg, model = thumos_model()
    model = model.cuda()
    variants = {"eager fp32": lambda: EagerBackend(cfg, model, "cuda")}
    if full:
        def compiled():
            b = EagerBackend(cfg, model, "cuda")
            b.graph = torch.compile(b.graph, dynamic=False)
            return b
        variants["eager + torch.compile (B=1 only: one compile)"] = compiled
    variants.update({
        "triton fp32": lambda: TritonBackend(cfg, model, "cuda", "fp32"),
        "triton fp16": lambda: TritonBackend(cfg, model, "cuda", "fp16"),
        "triton fp16 + CUDA graph": lambda: TritonBackend(cfg, model, "cuda", "fp16", cuda_graph=True),
    })
    if full:
        variants["triton bf16"] = lambda: TritonBackend(cfg, model, "cuda", "bf16")
    it1, it8 = (10, 5) if full else (5, 3)
    base = None
    for name, make in variants.items():
        def run(name=name, make=make):
            nonlocal base
            b = make()
            x1, l1 = torch.randn(1, 2048, 2304, device="cuda"), torch.tensor([2304])
            x8, l8 = torch.randn(8, 2048, 2304, device="cuda"), torch.full((8,), 2304)
            t1 = cuda_time(lambda: b.infer(x1, l1), iters=it1)
            if "torch.compile" in name:  # a B = 8 call would compile a second graph
                row(name, f"{t1:.2f}", f"{base[0] / t1:.2f}x", "-", "-")
                return
            t8 = cuda_time(lambda: b.infer(x8, l8), iters=it8)
            if base is None:
                base = (t1, t8)
            row(name, f"{t1:.2f}", f"{base[0] / t1:.2f}x", f"{8000 / t8:.1f}", f"{base[1] / t8:.2f}x")
        guarded(name, run)


def bench_nms() -> None:
    from mse_rt.kernels.nms_gpu import batched_nms_gpu

    batched_nms_native, cpu_name = cpu_nms()
    section("Batched NMS: 32 videos x 20 classes x 2000 candidates (soft-NMS, THUMOS test_cfg)",
            ("impl", "ms", f"speed-up vs {cpu_name}"))
    from mse_rt import load_config

    t = load_config(CONFIGS / "thumos_i3d.yaml")["test_cfg"]
    rng = np.random.default_rng(0)
    vids = []
    for _ in range(32):
        n = 20 * 2000
        st = rng.uniform(0, 2304, n)
        s = np.stack([st, st + rng.uniform(1, 100, n)], 1).astype(np.float32)
        vids.append((torch.from_numpy(s), torch.from_numpy(rng.uniform(0, 1, n).astype(np.float32) ** 4),
                     torch.from_numpy(np.repeat(np.arange(20), 2000))))
    # the CPU NMS runs video by video: time a sample and scale (C++: 4 videos; PyTorch: 1 video,
    # 2 of its 20 classes, since the reference soft-NMS loop takes seconds per class)
    sample = vids[:4] if cpu_name == "C++" else [(s[:4000], p[:4000], lab[:4000]) for s, p, lab in vids[:1]]
    scale = 32 / len(sample) * (1 if cpu_name == "C++" else 10)
    t0 = time.perf_counter()
    for s, p, lab in sample:
        batched_nms_native(s, p, lab, t["iou_threshold"], t["min_score"], t["max_seg_num"], True, True,
                           t["nms_sigma"], t["voting_thresh"])
    cpu_ms = (time.perf_counter() - t0) * 1e3 * scale
    row(f"{cpu_name} CPU (one video at a time; timed on {len(sample)} video(s), x{scale:.0f})", f"{cpu_ms:.1f}", "1.0x")
    g = [(s.cuda(), p.cuda(), lab.cuda()) for s, p, lab in vids]
    ms = cuda_time(lambda: batched_nms_gpu([a for a, _, _ in g], [b for _, b, _ in g], [c for _, _, c in g], t),
                   iters=3, warmup=1)
    row("Triton GPU (one launch)", f"{ms:.1f}", f"{cpu_ms / ms:.1f}x")


def tensorrt_rows() -> None:
    section("TensorRT", ("row", "result"))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        row("TensorRT", "skipped: the tensorrt package is not installed on this machine")
        return
    _tensorrt_detail_rows()


def _tensorrt_detail_rows() -> None:
    """TensorRT rows of benchmarks/gpu_check.py: build time, latency B=1 / throughput B=8 at T=2304
    for fp32 and fp16, and detections vs eager on the golden videos."""
    import tempfile

    import numpy as np
    import torch

    import mse_rt
    from mse_rt.config import load_config
    from mse_rt.export import build_engine, export_onnx
    from mse_rt.model import build_random_model

    cfg = load_config(CONFIGS / "thumos_i3d.yaml")
    model = build_random_model(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        eager = mse_rt.Detector.from_model(cfg, model.cuda(), device="cuda")
        for prec in ("fp32", "fp16"):
            onnx_path = export_onnx(model, Path(tmp) / f"m_{prec}.onnx", precision=prec, validate=False)
            t0 = time.perf_counter()
            eng = build_engine(onnx_path, Path(tmp) / f"m_{prec}.engine", fp16=prec == "fp16")
            t_build = time.perf_counter() - t0
            det = mse_rt.Detector.from_engine(eng)
            for B in (1, 8):
                x = torch.randn(B, 2048, 2304, device="cuda")
                lengths = torch.full((B,), 2304)
                for _ in range(3):
                    det.backend.infer(x, lengths)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(10):
                    det.backend.infer(x, lengths)
                torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) / 10 * 1e3
                ref = eager.backend.infer(x, lengths)
                got = det.backend.infer(x, lengths)
                err = float((got["cls_prob"] - ref["cls_prob"]).abs().max())
                row(f"TensorRT {prec} B={B}", f"build {t_build:.0f} s, {ms:.2f} ms/batch, {B * 1000 / ms:.1f} videos/s, "
                    f"cls_prob max err vs eager {err:.2e}")
            x = np.random.default_rng(0).standard_normal((2304, 2048)).astype(np.float32)
            a, b = eager.detect(x, fps=30.0), det.detect(x, fps=30.0)
            row(f"TensorRT {prec} detections", f"{len(b)} vs eager {len(a)}, top score diff "
                f"{abs(float(a.scores[0]) - float(b.scores[0])) if len(a) and len(b) else float('nan'):.2e}")


def plan(full: bool) -> list[tuple[str, float, object]]:
    """Sections in order: (name, estimated seconds on an H100 at THUMOS size, function). The
    estimates include Triton's compiles (every kernel x dtype x KMAX variant, a few s each)."""
    precisions = ["fp32", "fp16"] + (["bf16"] if full else [])
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if full else [])
    return [
        ("kernels", 40 if full else 30, lambda: check_kernels(dtypes)),
        ("nms golden", 15, check_nms_golden),
        ("backend golden", 45 if full else 30, lambda: check_backend_golden(precisions)),
        ("dense thumos", 30 if full else 20, lambda: check_dense_thumos(precisions)),
        ("kernel bandwidth", 20, bench_kernels),
        ("end to end", 180 if full else 90, lambda: bench_end_to_end(full)),
        ("nms bench", 40, bench_nms),
        ("tensorrt", 240 if importlib.util.find_spec("tensorrt") else 1, tensorrt_rows),
    ]


def main() -> int:
    global REPORT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_out_argument(ap, default=os.environ.get("OUT", "gpu_check_out"))
    ap.add_argument("--budget", type=float, default=300.0, help="seconds; sections that would not fit are skipped")
    ap.add_argument("--full", action="store_true", help="add torch.compile, bf16 and more iterations")
    ap.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # the default run is the quick one now
    ap.add_argument("--dry-run", action="store_true", help="no GPU needed: imports, plan, budget and report writing")
    args = ap.parse_args()
    how = use_source_tree()
    sections = plan(args.full)
    if args.dry_run:
        import mse_rt.kernels.ldm_afm  # noqa: F401  (the GPU sections' imports work from this tree)
        import mse_rt.kernels.nms_gpu  # noqa: F401

        REPORT = Report("gpu_check", args.out, title=f"mse_rt GPU check: dry run (mse_rt from the {how})")
        fits = f"fits --budget {args.budget:.0f}"
        plan_table = REPORT.table("Plan", ("section", "estimate s", "cumulative s", fits),
                                  formats={"estimate s": ".0f", "cumulative s": ".0f"})
        total = 0.0
        for name, est, _ in sections:
            total += est
            plan_table.add(name, est, total, "yes" if total <= args.budget else "skipped unless time is left")
        print(f"\nwrote {REPORT.md_path}")
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; this script is for the device machine (or use --dry-run)", file=sys.stderr)
        return 2
    import triton

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    REPORT = Report("gpu_check", args.out, title=f"mse_rt GPU check: {torch.cuda.get_device_name()}")
    REPORT.note(f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}; TF32 off; "
                f"mse_rt from the {how}; budget {args.budget:.0f} s{', full' if args.full else ''}.")
    start = time.perf_counter()
    for name, est, fn in sections:
        left = args.budget - (time.perf_counter() - start)
        if est > left:
            section(name, ("row", "result"))
            row(name, f"skipped: estimated {est:.0f} s, {left:.0f} s of the budget left (rerun with a larger --budget)")
        else:
            t0 = time.perf_counter()
            guarded(name, fn)
            print(f"[{name}: {time.perf_counter() - t0:.1f} s]", flush=True)
        REPORT.write()
    print(f"\nwrote {REPORT.md_path} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
