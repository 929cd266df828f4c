"""Command line: ``mse-rt <command>``; one module per command group.

    mse-rt detect --config C.yaml --ckpt K.pth.tar [--fps 30] a.npy b.npy -o results.json

Every deliberate error (:class:`mse_rt.MseRtError`) is printed as one line and exits 2; an
interrupt exits 130.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import MseRtError
from . import apps, detect, evaluate, models, serve, stream


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mse-rt", description="MSE-TAD temporal action detection runtime")
    sub = ap.add_subparsers(dest="command", required=True)
    for group in (detect, serve, stream, models, evaluate, apps):
        group.register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except MseRtError as exc:
        print(f"mse-rt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mse-rt: {args.command} interrupted", file=sys.stderr)
        return 130
