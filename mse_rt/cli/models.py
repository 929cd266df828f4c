"""Model files: ``mse-rt export | quantize | check-onnx | info``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .args import positive_int


def _cmd_export(args: argparse.Namespace) -> int:
    import logging

    from ..export import export_onnx, get_format
    from ..io.files import check_output_path

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    fmt = get_format(args.format)
    if fmt.name == "triton-repo":
        from ..export.tritonserver_repo import export_triton_repo

        out = export_triton_repo((args.config, args.ckpt), args.output, max_batch=args.max_batch,
                                 net_backend=args.triton_net)
        print(f"exported {out}")
        return 0
    check_output_path(args.output, what="export output")
    if fmt.name == "onnx":
        out = export_onnx((args.config, args.ckpt), args.output, opset=args.opset, dynamic=not args.static,
                          batch=args.batch, max_len=args.max_len, precision=args.precision)
    else:
        import tempfile

        from ..export import build_engine

        fp16 = args.precision == "fp16"
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx((args.config, args.ckpt), Path(tmp) / "model.onnx", opset=args.opset,
                                    precision=args.precision)
            out = build_engine(onnx_path, args.output, fp16=fp16, max_batch=args.max_batch)
    print(f"exported {out}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    import logging

    from ..export.quantize import quantize_onnx
    from ..io.files import check_output_path

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    check_output_path(args.output, what="quantized model")
    out = quantize_onnx(args.model, args.output, args.calib, max_videos=args.max_videos)
    print(f"wrote {out}")
    return 0


def _cmd_check_onnx(args: argparse.Namespace) -> int:
    from ..export import check_onnx_for_tensorrt

    ok = True
    for path in args.models:
        report = check_onnx_for_tensorrt(path)
        print(report.summary())
        ok &= report.ok
    return 0 if ok else 1


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from ..version import __version__
    from ..pipeline.nms import native_available
    from ..runtime import BACKENDS

    print(f"mse_rt {__version__}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"backends: {', '.join(BACKENDS)}; native C++ NMS: {'yes' if native_available() else 'NO'}")
    print(f"CUDA available: {torch.cuda.is_available()}")
    return 0


def register(sub) -> None:
    e = sub.add_parser("export", help="export a checkpoint to a deployable format")
    e.add_argument("--config", required=True)
    e.add_argument("--ckpt", required=True)
    e.add_argument("--format", default="onnx",
                   help="onnx | engine (TensorRT, needs a GPU and tensorrt) | triton-repo (a folder)")
    e.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                   help="graph precision (fp16: half network, float32 I/O, softmax / norms / decode in float32)")
    e.add_argument("--max-batch", type=positive_int, default=8, help="engine profile: largest batch")
    e.add_argument("--triton-net", default="onnxruntime", choices=("onnxruntime", "python"),
                   help="triton-repo: the network on Triton's ONNX Runtime backend, or on the Python backend "
                        "(ONNX Runtime inside; for servers without the ONNX Runtime backend)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    e.add_argument("--static", action="store_true", help="fixed (batch, max-len) instead of dynamic axes")
    e.add_argument("--batch", type=positive_int, default=1, help="example / static batch size")
    e.add_argument("--max-len", type=positive_int, default=None, help="example / static padded length")
    e.add_argument("-o", "--output", required=True)
    e.set_defaults(fn=_cmd_export)

    k = sub.add_parser("check-onnx", help="static TensorRT 10 compatibility check of ONNX graphs (no GPU needed)")
    k.add_argument("models", nargs="+")
    k.set_defaults(fn=_cmd_check_onnx)
    qz = sub.add_parser("quantize", help="static int8 (QDQ) ONNX for ONNX Runtime, calibrated on your feature files")
    qz.add_argument("--model", required=True, help="fp32 ONNX written by mse-rt export")
    qz.add_argument("--calib", nargs="+", required=True, help="calibration feature files or folders (.npy, (T, C))")
    qz.add_argument("--max-videos", type=positive_int, default=32)
    qz.add_argument("-o", "--output", required=True)
    qz.set_defaults(fn=_cmd_quantize)
    i = sub.add_parser("info", help="versions, backends and native modules available here")
    i.set_defaults(fn=_cmd_info)
