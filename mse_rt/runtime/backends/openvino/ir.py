"""mse_rt's OpenVINO IR files: a model as ``NAME.xml`` (graph) + ``NAME.bin`` (weights) with its
mse_rt metadata and an integrity checksum over both files.

Written by :func:`write_ir` (``mse-rt quantize --engine openvino``, the export cache), read by
:func:`read_ir` (``Detector.from_file("NAME.xml")``). The metadata lives in the model's
``rt_info`` under ``mse_rt`` (one string per key): ``format`` (:data:`IR_FORMAT_TAG`),
``version``, ``config`` (the TAD config as JSON), ``precision`` ("int8", or "fp32" / "bf16": a
float model and the precision it is meant to run in), ``recipe`` and ``calibration`` (JSON,
int8), ``source_onnx_sha256``, ``checkpoint_sha256``, ``layernorm_mean_convs``, then the two
integrity entries:

- ``bin_sha256``: the sha256 of the ``.bin`` file;
- ``file_sha256``: the sha256 of the ``.xml`` file with this very value replaced by 64 '0'
  characters (the ONNX seal's scheme, :mod:`mse_rt.io.integrity`). The xml holds
  ``bin_sha256``, so this one digest covers both files: an edited xml, a truncated or foreign
  bin, an xml without its bin are all refused with a :class:`ModelFileError` naming the file.

The two files are written as one unit: both to temporary names in the target folder, sealed,
then the ``.bin`` renamed into place first and the ``.xml`` last. A crash between the renames
leaves the new bin beside the old xml, which the recorded ``bin_sha256`` refuses; a reader never
sees a half-written pair as valid.

A file without ``file_sha256`` is refused unless ``allow_unverified=True`` (the rule every mse_rt
model file follows). The ONNX metadata OpenVINO's reader copies into ``rt_info["framework"]`` is
dropped at write time: its ``mse_rt.file_sha256`` is the source ONNX's, not the IR's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ....config import config_from_json
from ....errors import ExportError, ModelFileError
from ....io.files import atomic_output
from ....io.integrity import IntegrityError, differing_digests
from .loader import import_openvino

IR_FORMAT_TAG = "mse_rt.openvino_ir/1"
SECTION = "mse_rt"
CHECKSUM_FIELD = "file_sha256"
BIN_FIELD = "bin_sha256"
# placeholders of the two digests while the files are written: distinct, so each is found once
CHECKSUM_PLACEHOLDER = "0" * 64
BIN_PLACEHOLDER = "b" * 64
IR_PRECISIONS = ("fp32", "bf16", "int8")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def bin_path(xml: str | Path) -> Path:
    """The weights file of an IR: ``NAME.bin`` beside ``NAME.xml`` (where OpenVINO reads it)."""
    return Path(xml).with_suffix(".bin")


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_ir(model, xml_path: str | Path, meta: dict[str, str]) -> Path:
    """Write ``model`` (an ``openvino.Model``) as the IR pair ``xml_path`` + its ``.bin`` with the
    mse_rt ``meta`` (string values; see the module docstring for the keys) and the checksums.

    The caller's model is not changed (a clone is saved). Weights are kept as they are (no fp16
    compression). Returns ``xml_path``; :class:`ExportError` for a name without ``.xml``.
    """
    ov = import_openvino()
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise ExportError(f"an OpenVINO IR is written as NAME.xml + NAME.bin; got {xml_path}")
    if xml_path.is_dir():
        raise ExportError(f"output {xml_path} is a directory; give a file name such as {xml_path / 'model.xml'}")
    missing = [k for k in ("format", "config", "precision") if k not in meta]
    if missing or meta["precision"] not in IR_PRECISIONS:
        raise ExportError(f"IR metadata needs format, config and a precision in {IR_PRECISIONS}; got {sorted(meta)}")
    m = model.clone()
    info = m.get_rt_info()
    for key in ("framework", SECTION):
        if key in info.keys():
            del info[key]
    for key, value in {**meta, BIN_FIELD: BIN_PLACEHOLDER, CHECKSUM_FIELD: CHECKSUM_PLACEHOLDER}.items():
        if key in (BIN_FIELD, CHECKSUM_FIELD) and value not in (BIN_PLACEHOLDER, CHECKSUM_PLACEHOLDER):
            continue  # the digests are computed here, never taken from the caller
        m.set_rt_info(str(value), [SECTION, key])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", suffix=".ir", dir=xml_path.parent))
    try:
        tmp_xml = staging / "model.xml"
        ov.save_model(m, str(tmp_xml), compress_to_fp16=False)
        data = tmp_xml.read_bytes()
        for placeholder in (BIN_PLACEHOLDER, CHECKSUM_PLACEHOLDER):
            if data.count(placeholder.encode()) != 1:
                raise ExportError(f"{xml_path}: cannot place the integrity checksum (placeholder not found once)")
        data = data.replace(BIN_PLACEHOLDER.encode(), _sha256_file(staging / "model.bin").encode())
        data = data.replace(CHECKSUM_PLACEHOLDER.encode(), hashlib.sha256(data).hexdigest().encode())
        tmp_xml.write_bytes(data)
        # one unit: the bin first, the xml (which names the bin's digest) last
        with atomic_output(xml_path, what="OpenVINO IR (.xml)") as out_xml:
            with atomic_output(bin_path(xml_path), what="OpenVINO IR weights (.bin)") as out_bin:
                os.replace(staging / "model.bin", out_bin)
            os.replace(tmp_xml, out_xml)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return xml_path


def _section(data: bytes, xml_path: Path) -> dict[str, str]:
    """The ``rt_info/mse_rt`` entries of an IR's xml bytes ({} when absent)."""
    import xml.etree.ElementTree as ET

    # the model-level rt_info is the last element of the file: parse only that tail
    start = data.rfind(b"<rt_info>")
    if start < 0:
        return {}
    end = data.find(b"</rt_info>", start)
    try:
        node = ET.fromstring(data[start:end + len(b"</rt_info>")]) if end > 0 else None
    except ET.ParseError as exc:
        raise ModelFileError(f"{xml_path}: damaged OpenVINO IR xml ({exc}); write it again") from exc
    section = node.find(SECTION) if node is not None else None
    if section is None:
        return {}
    return {child.tag: child.get("value", "") for child in section}


def read_ir_meta(xml_path: str | Path) -> dict[str, str]:
    """The mse_rt metadata of an IR (no check; {} for a foreign IR)."""
    xml_path = Path(xml_path)
    return _section(xml_path.read_bytes(), xml_path)


def verify_ir(xml_path: str | Path, allow_unverified: bool = False) -> tuple[dict[str, str], bool]:
    """(mse_rt metadata, verified) of the IR ``xml_path``, its two files checked against the digests.

    :class:`ModelFileError` naming the file for: a missing xml or bin, a foreign IR (no mse_rt
    metadata), an edited xml, a truncated or foreign bin, and a file without checksum unless
    ``allow_unverified`` (then ``verified`` is False).
    """
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise ModelFileError(f"OpenVINO IR not found: {xml_path}")
    weights = bin_path(xml_path)
    if not weights.is_file():
        raise ModelFileError(f"{xml_path}: its weights file {weights.name} is missing (an OpenVINO IR is the .xml "
                             "and the .bin beside it, with the same name)")
    data = xml_path.read_bytes()
    meta = _section(data, xml_path)
    if meta.get("format", "").split("/")[0] != IR_FORMAT_TAG.split("/")[0]:
        raise ModelFileError(f"{xml_path} is not an mse_rt OpenVINO IR (no mse_rt metadata); write one with "
                             "`mse-rt quantize --engine openvino` (or convert the mse_rt ONNX file with it)")
    if meta["format"] != IR_FORMAT_TAG:
        raise ModelFileError(f"{xml_path}: IR format {meta['format']!r} is not the {IR_FORMAT_TAG!r} this mse_rt "
                             "reads; write it again with this version")
    recorded = meta.get(CHECKSUM_FIELD)
    if not recorded:
        if allow_unverified:
            return meta, False
        raise IntegrityError(f"{xml_path}: this mse_rt OpenVINO IR has no integrity checksum ({SECTION}/"
                             f"{CHECKSUM_FIELD}; every IR mse_rt writes has one), so changed bytes could not be "
                             "detected; write it again, or accept it unverified (allow_unverified=True, CLI "
                             "--allow-unverified-model)")
    if not _HEX64.fullmatch(recorded) or data.count(recorded.encode()) != 1:
        raise IntegrityError(f"{xml_path}: corrupt OpenVINO IR (its integrity checksum entry is damaged); write it "
                             "again")
    actual = hashlib.sha256(data.replace(recorded.encode(), CHECKSUM_PLACEHOLDER.encode())).hexdigest()
    if actual != recorded:
        got, want = differing_digests(actual, recorded)
        raise IntegrityError(f"{xml_path}: corrupt OpenVINO IR: the xml's sha256 {got} differs from the {want} "
                             "recorded when it was written (edited or damaged); write it again")
    actual = _sha256_file(weights)
    if actual != meta.get(BIN_FIELD, ""):
        got, want = differing_digests(actual, meta.get(BIN_FIELD, ""))
        raise IntegrityError(f"{weights}: not the weights of {xml_path.name} (a .bin of another model, truncated or "
                             f"damaged: {weights.stat().st_size} bytes, sha256 {got}, the xml records {want}); write "
                             "the IR again")
    return meta, True


def read_ir(core, xml_path: str | Path, allow_unverified: bool = False):
    """(openvino.Model, config dict, mse_rt metadata, verified) of an mse_rt IR, checked by
    :func:`verify_ir` before OpenVINO reads it."""
    xml_path = Path(xml_path)
    meta, verified = verify_ir(xml_path, allow_unverified)
    if meta.get("precision") not in IR_PRECISIONS:
        raise ModelFileError(f"{xml_path}: unknown precision {meta.get('precision')!r} in its mse_rt metadata")
    try:
        cfg = config_from_json(meta["config"])
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{xml_path}: its mse_rt config metadata is not a valid config: {exc}") from exc
    try:
        model = core.read_model(str(xml_path), str(bin_path(xml_path)))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses for any bad file
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelFileError(f"OpenVINO cannot read {xml_path}: {type(exc).__name__}: {first}") from exc
    return model, cfg, meta, verified


def json_entry(meta: dict[str, str], key: str, xml_path: str | Path):
    """A JSON-valued metadata entry, decoded (None when absent); ModelFileError when malformed."""
    if key not in meta:
        return None
    try:
        return json.loads(meta[key])
    except ValueError as exc:
        raise ModelFileError(f"{xml_path}: its mse_rt {key} metadata is not JSON: {exc}") from exc
