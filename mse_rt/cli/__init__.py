"""Command line: ``mse-rt <command>``; one module per command group.

    mse-rt detect --config C.yaml --ckpt K.pth.tar [--fps 30] a.npy b.npy -o results.json

Every deliberate error (:class:`mse_rt.MseRtError`) is printed as one line and exits 2. SIGTERM
(what containers and schedulers send to stop a job) is handled like Ctrl-C (SIGINT): both raise
KeyboardInterrupt in the main thread, so a command cleans up the same way (``detect`` keeps its
finished videos in its journal); an interrupt exits 130 after SIGINT and 143 (128 + 15, the shell's
convention) after SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from ..errors import MseRtError
from . import apps, detect, evaluate, models, serve, stream, video


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mse-rt", description="MSE-TAD temporal action detection runtime")
    verbose_help = "show the INFO logging of NNCF, OpenVINO, ONNX Runtime and Ray (quiet by default)"
    ap.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    sub = ap.add_subparsers(dest="command", required=True)
    for group in (detect, video, serve, stream, models, evaluate, apps):
        group.register(sub)
    for cmd in sub.choices.values():  # also after the command: mse-rt quantize ... --verbose
        cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    return ap


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While the block runs (in the main thread), SIGTERM raises KeyboardInterrupt like SIGINT does;
    yields a list that receives each SIGTERM's number. The previous handler is restored after."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield received
        return

    def on_term(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..logs import configure

    configure(verbose=args.verbose)
    with sigterm_as_interrupt() as terminated:
        try:
            from ..runtime.options import default_threads

            default_threads(None)  # a bad MSE_RT_THREADS fails every command up front, used or not
            rc = args.fn(args)
        except MseRtError as exc:
            print(f"mse-rt: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"mse-rt: {args.command} interrupted", file=sys.stderr)
            rc = 130
    return 128 + signal.SIGTERM if rc == 130 and terminated else rc
