"""``mse-rt serve``: the Ray Serve HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import argparse
import time

from ..errors import MseRtError
from .args import positive_int


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.ray_cluster import shutdown
    from ..serving.ray_serve import serve_detector

    if not (args.model or (args.config and args.ckpt)):
        raise MseRtError("serve needs --config and --ckpt, or --model FILE")
    serve_detector(host=args.host, port=args.port, config=args.config, ckpt=args.ckpt, model_file=args.model,
                   backend=args.backend, device=args.device, replicas=args.replicas, max_batch=args.max_batch)
    print(f"serving on http://{args.host}:{args.port}/detect (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shutdown()
        return 0


def register(sub) -> None:
    sv = sub.add_parser("serve", help="HTTP endpoint (Ray Serve) on 127.0.0.1: POST features, get detections")
    sv.add_argument("--config")
    sv.add_argument("--ckpt")
    sv.add_argument("--model")
    sv.add_argument("--backend", default="eager")
    sv.add_argument("--device", default="cpu")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=positive_int, default=8000)
    sv.add_argument("--replicas", type=positive_int, default=1)
    sv.add_argument("--max-batch", type=positive_int, default=8)
    sv.set_defaults(fn=_cmd_serve)
