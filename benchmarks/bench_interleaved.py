"""Interleaved A/B timing of CPU variants against eager fp32: ratios from measurements taken side by side.

    python benchmarks/bench_interleaved.py [--variants openvino-int8 openvino-bf16] [--rounds 8]
        [--n1 5] [--n4 2] [--threads 2] [--out cpu_report]

Why: on a shared (virtualised) CPU the speed of the same process moves in phases of seconds
(measured here: OpenVINO int8 at T = 2304 runs 210-220 ms per video for a while, then 290-320 ms
for 3-10 s, then back; eager fp32 moves between 750 and 930 ms). A ratio of two medians taken
minutes apart then says as much about the host as about the code. Here every variant (and eager
fp32) lives in its own worker process, built once; the coordinator runs them in turn, round after
round (the order rotates each round), each turn one warm-up call, ``n1`` single-video calls and
``n4`` calls of 4 videos through ``Detector.detect_batch`` (THUMOS config, random weights,
T = 2304). Each round gives each variant's ratio to the eager turn of the same round; the
table gives the median, min and max of those ratios and the pooled medians of the times, and
a "clean" ratio: around every call the coordinator (idle while a worker runs; it probes after a
50 ms pause, once the worker's threads have stopped) times a small int8 GEMM (``host_probe``,
~15 ms, torch's VNNI kernel, independent of the code under test); calls whose probes before and
after reach ``--clean-share`` (0.95) of the best probe of the whole run count as clean, and the
clean ratio compares the pooled medians of clean calls. (The probe sees the host's phases: 870
GOP/s normally, ~770 for stretches of seconds, dips to ~440.) Idle workers sleep on a pipe; the
non-eager workers run with ``OMP_WAIT_POLICY=PASSIVE`` (their idle OpenMP threads must not spin
beside the engine's), eager and the coordinator with OpenMP's default (a short spin, then sleep;
with PASSIVE the probe itself reads ~450 instead of ~850), as in ``bench_cpu_precisions.py``.
Writes OUT/interleaved.md / .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import THUMOS_CONFIG, Report, add_out_argument, use_source_tree

CONFIG = THUMOS_CONFIG
OMP_POLICY = os.environ.get("OMP_WAIT_POLICY")  # as given, for the eager worker
MARK = "@@ "  # worker replies start with this; NNCF / OpenVINO log lines on stdout are skipped


def worker(variant: str, hint: str, threads: int, T: int) -> int:
    """Build one detector, then answer ``"B n warm"`` lines on stdin (one untimed call first when
    warm is 1, then n timed calls of B videos) with the n timed seconds (JSON)."""
    import tempfile

    import numpy as np
    import torch

    use_source_tree()
    from mse_rt import load_config
    from mse_rt.apps.variants import build_variants
    from mse_rt.model import build_random_model

    torch.set_num_threads(threads)
    cfg = load_config(CONFIG)
    model = build_random_model(cfg)
    C = cfg["model"]["input_dim"]
    calib = None
    if variant.endswith("int8"):  # random weights: random calibration, as ``mse-rt benchmark`` does
        rng = np.random.default_rng(1)
        calib = [rng.standard_normal((T, C)).astype(np.float32) for _ in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        det = build_variants([variant], None, None, Path(tmp), calib=calib, threads=threads, hint=hint,
                             max_batch=4, model=model)[variant]
        rng = np.random.default_rng(0)
        videos = [rng.standard_normal((T, C)).astype(np.float32) for _ in range(4)]
        print(MARK + json.dumps({"ready": variant}), flush=True)
        for line in sys.stdin:
            B, n, warm = map(int, line.split())
            if warm:  # after the idle wait
                det.detect_batch(videos[:B], fps=30.0)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                det.detect_batch(videos[:B], fps=30.0)
                times.append(time.perf_counter() - t0)
            print(MARK + json.dumps(times), flush=True)
    return 0


def settled_probe(pause_s: float = 0.05) -> float:
    """:func:`host_probe` after a short pause (the last worker's threads stop spinning first)."""
    time.sleep(pause_s)
    return host_probe()


def host_probe(n: int = 1024, repeat: int = 5) -> float:
    """The host's int8 speed right now: :func:`mse_rt.apps.benchmark.gemm_peak` of an n x n x n int8 GEMM
    (``torch._int_mm``, VNNI; 1e9 ops/s, best of ``repeat``, about 15 ms); the code under test
    plays no part in it."""
    use_source_tree()
    from mse_rt.apps.benchmark import gemm_peak

    gops = gemm_peak("int8", n=n, repeat=repeat)
    if gops is None:
        raise RuntimeError("this torch cannot run an int8 GEMM (torch._int_mm) on the CPU: no host probe")
    return gops


class Worker:
    def __init__(self, key: str, variant: str, hint: str, threads: int, T: int, log: Path) -> None:
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if variant != "eager":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        elif OMP_POLICY is not None:
            env["OMP_WAIT_POLICY"] = OMP_POLICY
        self.key = key
        self.log = open(log, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", variant, "--hint", hint,
                                      "--threads", str(threads), "--T", str(T)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)
        self.reply()  # ready

    def reply(self):
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"worker {self.key} ended (rc {self.proc.wait()}); see {self.log.name}")

    def run(self, B: int, n: int, warm: bool) -> dict:
        """n timed calls at batch B, one at a time, with a host probe before the first and after
        each (taken here, in the idle coordinator, once the worker has settled)."""
        times, probes = [], [settled_probe()]
        for i in range(n):
            self.proc.stdin.write(f"{B} 1 {int(warm and i == 0)}\n")
            self.proc.stdin.flush()
            times += self.reply()
            probes.append(settled_probe())
        return {"times": times, "probes": probes}

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.log.close()


def summarize(times: dict, keys: list[str], clean_share: float = 0.95) -> dict:
    """Per variant, from ``times[key][B]`` = one ``{"times": [n s], "probes": [n + 1 GOP/s]}`` per
    round: pooled median ms (B = 1) / videos/s (B = 4); the per-round ratios of medians to the
    eager turn of the same round; and the "clean" ratio: pooled medians of the calls whose host
    probes before and after both reached ``clean_share`` of the best probe of the whole run."""
    best = max(p for k in keys for B in (1, 4) for r in times[k][B] for p in r["probes"])

    def calls(k, B, clean):
        return [t for r in times[k][B] for i, t in enumerate(r["times"])
                if not clean or min(r["probes"][i], r["probes"][i + 1]) >= clean_share * best]

    def stats(xs):
        return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "rounds": xs}

    out = {}
    for k in keys:
        rounds = {B: [statistics.median(r["times"]) for r in times[k][B]] for B in (1, 4)}
        eager = {B: [statistics.median(r["times"]) for r in times["eager"][B]] for B in (1, 4)}
        entry = {"ms_b1": 1e3 * statistics.median(calls(k, 1, False)),
                 "videos_per_s_b4": 4 / statistics.median(calls(k, 4, False)),
                 "ratio_b1": stats([e / v for e, v in zip(eager[1], rounds[1])]),
                 "ratio_b4": stats([e / v for e, v in zip(eager[4], rounds[4])]),
                 "best_probe_gops": best}
        for B in (1, 4):
            mine, base = calls(k, B, True), calls("eager", B, True)
            entry[f"clean_b{B}"] = {"calls": len(mine), "of": len(calls(k, B, False)),
                                    "median_s": statistics.median(mine) if mine else None,
                                    "ratio": statistics.median(base) / statistics.median(mine)
                                    if mine and base else None}
        out[k] = entry
    return out


def add_tables(report: Report, summary: dict, args) -> None:
    """The run's description and one row per variant (times, per-round ratios, clean ratios)."""
    best = next(iter(summary.values()))["best_probe_gops"]
    report.note(f"Interleaved A/B, THUMOS size (random weights, T = {args.T}), {args.threads} threads, each variant "
                f"in its own worker process; {args.rounds} rounds, each turn a warm-up call, {args.n1} calls at B = 1 "
                f"and {args.n4} at B = 4; per-round ratios against the eager turn of the same round. Clean: calls "
                f"whose host probes (int8 GEMM, before and after) reached {100 * args.clean_share:.0f} % of the "
                f"run's best probe ({best:.0f} GOP/s); ratio of pooled clean medians.", write=False)

    def clean(c, B):
        if c["ratio"] is None:
            return f"- ({c['calls']}/{c['of']})"
        value = f"{1e3 * c['median_s']:.0f} ms" if B == 1 else f"{B / c['median_s']:.2f}/s"
        return f"{value}, {c['ratio']:.2f}x ({c['calls']}/{c['of']})"

    def spread(r):
        return f"{r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]"

    rows = [(k, s["ms_b1"], spread(s["ratio_b1"]), clean(s["clean_b1"], 1), s["videos_per_s_b4"],
             spread(s["ratio_b4"]), clean(s["clean_b4"], 4)) for k, s in summary.items()]
    report.table("Variants vs eager fp32, side by side",
                 ["variant", "B=1 ms", "B=1 vs eager: median [min, max] of rounds", "B=1 clean: ms, vs eager (calls)",
                  "B=4 videos/s", "B=4 vs eager: median [min, max]", "B=4 clean: videos/s, vs eager (calls)"], rows,
                 formats={"B=1 ms": ".0f", "B=4 videos/s": ".2f"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["openvino-int8", "openvino-bf16"])
    ap.add_argument("--throughput", nargs="*", default=["openvino-int8", "openvino-bf16"],
                    help="variants also run as a second worker with OpenVINO's throughput hint")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--n1", type=int, default=5)
    ap.add_argument("--n4", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--T", type=int, default=2304)
    ap.add_argument("--clean-share", type=float, default=0.95,
                    help="a call counts as clean when the host probes around it reach this share of the best")
    add_out_argument(ap, default="cpu_report")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--hint", default="latency", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.hint, args.threads, args.T)
    if args.rounds < 1 or args.n1 < 1 or args.n4 < 1:
        ap.error("--rounds, --n1 and --n4 must be at least 1")
    if not 0 < args.clean_share <= 1:
        ap.error("--clean-share must be in (0, 1]")
    # the coordinator's probe keeps OpenMP's default wait policy (set before torch loads): with
    # PASSIVE the probe's threads sleep between parallel regions and it reads ~450 instead of ~850
    os.environ.pop("OMP_WAIT_POLICY", None)
    import torch

    torch.set_num_threads(args.threads)
    host_probe()  # warm-up
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = [("eager", "eager", "latency")] + [(v, v, "latency") for v in args.variants if v != "eager"]
    specs += [(f"{v} (throughput hint)", v, "throughput") for v in args.throughput if v in args.variants]
    workers = []
    try:
        for key, variant, hint in specs:
            print(f"building {key} ...", flush=True)
            workers.append(Worker(key, variant, hint, args.threads, args.T, out / f"worker-{len(workers)}.log"))
        times = {w.key: {1: [], 4: []} for w in workers}
        for r in range(args.rounds):
            order = workers[r % len(workers):] + workers[:r % len(workers)]
            for w in order:
                times[w.key][1].append(w.run(1, args.n1, warm=True))
                times[w.key][4].append(w.run(4, args.n4, warm=False))
            e = statistics.median(times["eager"][1][-1]["times"])
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{w.key} {1e3 * statistics.median(times[w.key][1][-1]['times']):.0f} ms "
                f"({e / statistics.median(times[w.key][1][-1]['times']):.2f}x, probe "
                f"{min(times[w.key][1][-1]['probes']):.0f}-{max(times[w.key][1][-1]['probes']):.0f})"
                for w in workers), flush=True)
    finally:
        for w in workers:
            w.close()
    summary = summarize(times, [w.key for w in workers], args.clean_share)
    report = Report("interleaved", out, title=__doc__.splitlines()[0])
    report.data.update({"summary": summary, "times_s": times, "args": vars(args)})
    add_tables(report, summary, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
