"""``mse-rt serve``: the Ray Serve HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import MseRtError
from .args import add_model_arguments, int_at_least, positive_int


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1..65535 (usage error otherwise)."""
    v = int_at_least(1)(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [1, 65535], got {v}")
    return v


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.ray_cluster import shutdown
    from ..serving.ray_serve import serve_detector

    if not (args.model or (args.config and args.ckpt)):
        raise MseRtError("serve needs --config and --ckpt, or --model FILE")
    if args.model and (args.config or args.ckpt):
        raise MseRtError("--model runs a deployable file on its own; drop --config / --ckpt")
    # serve_detector checks the port and builds the model here first: a bad file, config or port
    # is a one-line error before Ray starts
    try:
        serve_detector(host=args.host, port=args.port, config=args.config, ckpt=args.ckpt, model_file=args.model,
                       backend=args.backend, device=args.device, replicas=args.replicas, max_batch=args.max_batch,
                       allow_unverified=args.allow_unverified_model if args.model else args.allow_unverified_checkpoint)
    except MseRtError:
        ray = sys.modules.get("ray")  # stop Ray only if it was started (the checks run before it)
        if ray is not None and ray.is_initialized():
            shutdown()
        raise
    print(f"serving on http://{args.host}:{args.port}/detect (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shutdown()
        return 0


def register(sub) -> None:
    sv = sub.add_parser("serve", help="HTTP endpoint (Ray Serve) on 127.0.0.1: POST features, get detections")
    add_model_arguments(sv, slow_int8=False)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=port_number, default=8000, help="TCP port, 1..65535")
    sv.add_argument("--replicas", type=positive_int, default=1)
    sv.add_argument("--max-batch", type=positive_int, default=8)
    sv.set_defaults(fn=_cmd_serve)
