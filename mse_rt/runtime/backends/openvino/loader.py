"""Reading what the OpenVINO backend runs: the package, this CPU's capabilities, the mse_rt
ONNX file's metadata (config, precision, integrity checksum). Saved IRs: :mod:`.ir`."""

from __future__ import annotations

from pathlib import Path

from ....config import config_from_json
from ....errors import BackendError, ModelFileError
from ....io.integrity import CHECKSUM_KEY, verify_onnx_checksum


def import_openvino():
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendError("the openvino backend needs OpenVINO: pip install 'mse-rt[openvino]'") from exc
    return ov


def cpu_capabilities() -> list[str]:
    """OpenVINO's CPU optimisation capabilities here (e.g. FP32, BF16, INT8)."""
    ov = import_openvino()
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def int8_support() -> tuple[bool, str]:
    """(whether OpenVINO runs int8 fast on this CPU: its INT8 capability and int8 dot-product
    instructions, :mod:`mse_rt.runtime.cpu`; a sentence saying why not)."""
    from ...cpu import int8_dot_support

    caps = cpu_capabilities()
    dot, why = int8_dot_support()
    if "INT8" not in caps:
        return False, f"no INT8 support in OpenVINO (capabilities: {sorted(caps)})"
    if dot is False:
        return False, why
    return True, why


def read_onnx_meta(path: Path) -> dict[str, str]:
    try:
        import onnx
    except ImportError as exc:
        raise BackendError("reading mse_rt ONNX metadata needs onnx: pip install 'mse-rt[onnx]'") from exc
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends: a truncated or foreign file
        raise ModelFileError(f"cannot read {path} as ONNX: truncated, damaged or not an ONNX file "
                             "(the protobuf does not parse)") from exc
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("mse_rt.")}


def read_mse_rt_onnx(path: Path, allow_unverified: bool = False) -> tuple[dict, dict[str, str], bool]:
    """(config, mse_rt metadata, verified) of an fp32 mse_rt ONNX file, its checksum verified;
    :class:`BackendError` / :class:`ModelFileError` naming the file otherwise. A file without a
    checksum is refused unless ``allow_unverified`` (then ``verified`` is False)."""
    if not path.is_file():
        raise ModelFileError(f"ONNX file not found: {path}")
    meta = read_onnx_meta(path)
    if "mse_rt.config" not in meta:
        raise ModelFileError(f"{path} is not an mse_rt ONNX graph (no mse_rt metadata)")
    verified = verify_onnx_checksum(path, meta.get(CHECKSUM_KEY), allow_unverified=allow_unverified)
    try:
        cfg = config_from_json(meta["mse_rt.config"])
    except ValueError as exc:
        raise BackendError(f"the ONNX file's mse_rt.config metadata is not a valid config: {exc}") from exc
    if meta.get("mse_rt.precision", "fp32") != "fp32":
        raise BackendError(f"{path} is already a {meta['mse_rt.precision']} graph; give OpenVINO the fp32 export "
                           "(precision is chosen here)")
    return cfg, meta, verified


def resolve_precision(precision: str, caps: set[str], allow_fallback: bool) -> tuple[str, str, str]:
    """(precision to run, OpenVINO float precision "f32" / "bf16", what was used in words) for the
    asked ``precision`` on a CPU with OpenVINO capabilities ``caps``. bf16 without BF16 and int8
    without int8 dot-product instructions raise :class:`BackendError` unless ``allow_fallback``."""
    float_precision = "f32"
    used = precision
    if precision in ("bf16", "int8"):
        if "BF16" in caps:
            float_precision = "bf16"
        elif precision == "bf16" and not allow_fallback:
            raise BackendError("this CPU has no BF16 support (OpenVINO capabilities: "
                               f"{sorted(caps)}); use precision='fp32' or allow_fallback=True")
        elif precision == "bf16":
            used = "fp32 (no BF16 on this CPU)"
    if precision == "int8":
        from ...cpu import int8_dot_support

        dot, why = int8_dot_support()
        if "INT8" not in caps or dot is False:
            reason = why if dot is False else f"no INT8 support in OpenVINO (capabilities: {sorted(caps)})"
            if not allow_fallback:
                raise BackendError(f"precision='int8': {reason}; use precision='fp32' / 'bf16', or "
                                   "allow_fallback=True to run the float path instead")
            precision = "bf16" if float_precision == "bf16" else "fp32"
            used = f"{precision} (int8 asked: {reason})"
    return precision, float_precision, used
