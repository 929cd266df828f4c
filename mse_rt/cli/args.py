"""argparse value types shared by the commands: each gives a usage error naming the bound."""

from __future__ import annotations

import argparse
import math

from ..config.schema import FPS_RANGE
from ..runtime.options import MAX_THREADS


def int_at_least(low: int):
    """argparse type: an integer >= ``low``, with a usage error naming the bound."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
        return v

    return parse


def int_in(low: int, high: int, why: str = ""):
    """argparse type: an integer in [low, high], with a usage error naming the range (and ``why``)."""
    def parse(text: str) -> int:
        v = int_at_least(low)(text)
        if v > high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}]{why}, got {v}")
        return v

    return parse


positive_int = int_at_least(1)


nonneg_int = int_at_least(0)


# thread counts: 100000 made ONNX Runtime hang and torch crash (segmentation fault)
thread_count = int_in(1, MAX_THREADS)
thread_count_or_auto = int_in(0, MAX_THREADS, " (0: the library's choice)")


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return v


def unit_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return v


def float_in(low: float, high: float, what: str = "a number"):
    """argparse type: a number in [``low``, ``high``], with a usage error naming the range."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in [{low:g}, {high:g}], got {text!r}") from None
        if not low <= v <= high:  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {what} in [{low:g}, {high:g}], got {text}")
        return v

    return parse


# --fps of every command: the range the API enforces (docs/spec/units.md)
frame_rate = float_in(*FPS_RANGE, what="a frame rate (frames per second)")


def add_model_arguments(p: argparse.ArgumentParser, model_help: str | None = None, slow_int8: bool = True,
                        runtime: bool = True) -> None:
    """The model choice every running command shares: ``--config`` + ``--ckpt``, or ``--model FILE``;
    the integrity opt-outs (:mod:`mse_rt.io.integrity`); ``runtime``: ``--backend`` / ``--device``."""
    p.add_argument("--config", help="reference YAML config")
    p.add_argument("--ckpt", help="reference checkpoint (.pth.tar)")
    p.add_argument("--model", help=model_help or "a deployable model file instead of config + checkpoint (.onnx, "
                                                 ".xml OpenVINO IR, .engine)")
    if slow_int8:
        p.add_argument("--allow-slow-int8", action="store_true",
                       help="run an int8 ONNX graph on a CPU without int8 dot-product instructions (VNNI)")
    p.add_argument("--allow-unverified-model", action="store_true",
                   help="run an mse_rt model file (ONNX, OpenVINO IR) that carries no integrity checksum")
    p.add_argument("--allow-unverified-checkpoint", action="store_true",
                   help="accept a legacy (non-zip) checkpoint, which carries no checksum")
    if runtime:
        p.add_argument("--backend", default="eager")
        p.add_argument("--device", default="cpu")
