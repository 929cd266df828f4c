"""Model files: ``mse-rt export | quantize | check-onnx | info``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import MseRtError
from .args import positive_int


def _cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_onnx, get_format
    from ..io.files import check_not_an_input, check_output_path
    from ..logs import show_progress

    show_progress()

    fmt = get_format(args.format)
    if args.model:
        if fmt.name != "triton-repo" or args.config or args.ckpt:
            raise MseRtError("--model (an .onnx file or an OpenVINO IR .xml) is for --format triton-repo, without "
                             "--config / --ckpt")
    elif not (args.config and args.ckpt):
        raise MseRtError("export needs --config and --ckpt (or, for --format triton-repo, --model FILE)")
    # before any work: the output never overwrites an input (the checkpoint, the config, the model)
    check_not_an_input(args.output, [p for p in (args.config, args.ckpt, args.model) if p], what="export output")
    if fmt.name == "triton-repo":
        from ..export.tritonserver_repo import export_triton_repo

        out = export_triton_repo(args.model or (args.config, args.ckpt), args.output, max_batch=args.max_batch,
                                 net_backend=args.triton_net,
                                 allow_unverified=bool(args.ckpt) and args.allow_unverified_checkpoint)
        print(f"exported {out}")
        return 0
    check_output_path(args.output, what="export output")
    if fmt.name == "onnx":
        out = export_onnx((args.config, args.ckpt), args.output, opset=args.opset, dynamic=not args.static,
                          batch=args.batch, max_len=args.max_len, precision=args.precision,
                          allow_unverified=args.allow_unverified_checkpoint)
    else:
        import tempfile

        from ..export import build_engine

        fp16 = args.precision == "fp16"
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx((args.config, args.ckpt), Path(tmp) / "model.onnx", opset=args.opset,
                                    precision=args.precision, allow_unverified=args.allow_unverified_checkpoint)
            out = build_engine(onnx_path, args.output, fp16=fp16, max_batch=args.max_batch)
    print(f"exported {out}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from ..export.quantize import calibration_files
    from ..io.files import check_not_an_input, check_output_path
    from ..logs import show_progress

    show_progress()

    inputs = [args.model, *calibration_files(args.calib or [])]
    outputs = [Path(args.output)]
    if args.engine == "openvino":
        if Path(args.output).suffix != ".xml":
            raise MseRtError(f"--engine openvino writes an OpenVINO IR: give -o NAME.xml (NAME.bin is written beside "
                             f"it), got {args.output}")
        outputs.append(Path(args.output).with_suffix(".bin"))
    elif args.precision != "int8" or args.bias_correction:
        raise MseRtError("--precision and --bias-correction are options of --engine openvino")
    if args.precision == "int8" and not args.calib:
        raise MseRtError("int8 needs calibration feature files: --calib FILES_OR_FOLDERS")
    if args.precision != "int8" and args.calib:
        raise MseRtError(f"a {args.precision} model is not calibrated: drop --calib")
    for out in outputs:  # before any work: never overwrite the model or a calibration file
        check_not_an_input(out, inputs, what="quantized model")
        check_output_path(out, what="quantized model")
    if args.engine == "openvino":
        from ..export.openvino import DEFAULT_BIAS_CORRECTION, quantize_openvino

        out = quantize_openvino(args.model, args.output, args.calib if args.precision == "int8" else None,
                                precision=args.precision, max_videos=args.max_videos,
                                bias_correction=args.bias_correction or DEFAULT_BIAS_CORRECTION,
                                allow_unverified=args.allow_unverified)
        print(f"wrote {out} + {out.with_suffix('.bin').name}")
        return 0
    from ..export.quantize import quantize_onnx

    out = quantize_onnx(args.model, args.output, args.calib, max_videos=args.max_videos,
                        allow_unverified=args.allow_unverified)
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

    from ..pipeline.nms import native_available
    from ..runtime import BACKENDS
    from ..version import __version__

    print(f"mse_rt {__version__}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"backends: {', '.join(BACKENDS)}; native C++ NMS: {'yes' if native_available() else 'NO'}")
    print(f"CUDA available: {torch.cuda.is_available()}")
    return 0


def register(sub) -> None:
    e = sub.add_parser("export", help="export a checkpoint to a deployable format")
    e.add_argument("--config", help="reference YAML config")
    e.add_argument("--ckpt", help="reference checkpoint (.pth.tar)")
    e.add_argument("--model", help="--format triton-repo only: a deployable model file instead of config + "
                                   "checkpoint (an mse_rt .onnx, or an OpenVINO IR .xml from mse-rt quantize)")
    e.add_argument("--format", default="onnx",
                   help="onnx | engine (TensorRT, needs a GPU and tensorrt) | triton-repo (a folder)")
    e.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                   help="graph precision (fp16: half network, float32 I/O, softmax / norms / decode in float32)")
    e.add_argument("--max-batch", type=positive_int, default=8, help="engine profile: largest batch")
    e.add_argument("--triton-net", default=None, choices=("onnxruntime", "python", "openvino"),
                   help="triton-repo: the network on Triton's ONNX Runtime backend (default for ONNX), on the Python "
                        "backend with ONNX Runtime (servers without the ONNX Runtime backend), or with OpenVINO "
                        "(an OpenVINO IR --model; its default)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    e.add_argument("--static", action="store_true", help="fixed (batch, max-len) instead of dynamic axes")
    e.add_argument("--batch", type=positive_int, default=1, help="example / static batch size")
    e.add_argument("--max-len", type=positive_int, default=None, help="example / static padded length")
    e.add_argument("--allow-unverified-checkpoint", action="store_true",
                   help="accept a legacy (non-zip) checkpoint, which carries no checksum")
    e.add_argument("-o", "--output", required=True)
    e.set_defaults(fn=_cmd_export)

    k = sub.add_parser("check-onnx", help="static TensorRT 10 compatibility check of ONNX graphs (no GPU needed)")
    k.add_argument("models", nargs="+")
    k.set_defaults(fn=_cmd_check_onnx)
    qz = sub.add_parser("quantize", help="int8 model calibrated on your feature files: a QDQ ONNX for ONNX Runtime "
                                         "(default), or an OpenVINO IR (--engine openvino)")
    qz.add_argument("--model", required=True, help="fp32 ONNX written by mse-rt export")
    qz.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "openvino"),
                    help="onnxruntime: int8 QDQ .onnx; openvino: an OpenVINO IR (-o NAME.xml, NAME.bin beside it) "
                         "that Detector.from_file / detect / stream / serve run without calibrating")
    qz.add_argument("--precision", default="int8", choices=("int8", "fp32", "bf16"),
                    help="openvino: int8 (calibrated), or a float IR (fp32, or bf16 on BF16 CPUs; no --calib)")
    qz.add_argument("--bias-correction", default=None, choices=("full", "fast"),
                    help="openvino int8: NNCF's bias correction (default full: more accurate, paid once here)")
    qz.add_argument("--calib", nargs="+", help="calibration feature files or folders (.npy, (T, C)); int8 only")
    qz.add_argument("--max-videos", type=positive_int, default=32, help="calibration videos used (the first N)")
    qz.add_argument("--allow-unverified-model", dest="allow_unverified", action="store_true",
                    help="quantize an mse_rt ONNX file that has no integrity checksum (written by an old mse_rt)")
    qz.add_argument("-o", "--output", required=True)
    qz.set_defaults(fn=_cmd_quantize)
    i = sub.add_parser("info", help="versions, backends and native modules available here")
    i.set_defaults(fn=_cmd_info)
