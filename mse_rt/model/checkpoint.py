"""Loading reference checkpoints (docs/spec/checkpoint.md) into :class:`mse_rt.model.MSETAD`.

Accepted layouts: a dict with ``state_dict_ema`` (preferred) and/or ``state_dict``, or a bare
state dict; a DataParallel ``module.`` prefix is stripped. Files are read with
``weights_only=True``: a checkpoint cannot run code on load.

Integrity (docs/spec/checkpoint.md): a zip checkpoint (every torch >= 1.6 save) has each member's
CRC-32 verified; a legacy (non-zip) one carries no checksum and is refused unless the caller gives
the file's expected ``sha256`` or ``allow_unverified=True``. With ``sha256`` the whole file is
compared with it, whatever its format.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..io.integrity import differing_digests

# Which config field most likely explains a wrongly shaped parameter, by name fragment.
_SHAPE_HINTS = [
    ("backbone.embd.0.conv.weight", "dataset.input_dim (dim 1) / model.embd_dim / model.embd_kernel_size"),
    ("backbone.embd.", "model.embd_dim / model.embd_kernel_size"),
    ("convkw", "model.k or model.n_mse_win_size (large kernel = round((ks + 1) * k), made odd)"),
    ("psi", "model.n_mse_win_size (branch kernel size)"),
    ("convw", "model.n_mse_win_size (branch kernel size)"),
    ("mlp.", "model.mse_mlp_dim"),
    ("cls_head.cls_head", "dataset.num_classes / model.head_kernel_size"),
    ("start_head.cls_head", "dataset.num_classes / model.boudary_kernel_size"),
    ("end_head.cls_head", "dataset.num_classes / model.boudary_kernel_size"),
    ("start_head.", "model.head_dim / model.boudary_kernel_size"),
    ("end_head.", "model.head_dim / model.boudary_kernel_size"),
    ("offset_head", "model.num_bins (2 * (num_bins + 1) channels) / model.head_kernel_size"),
    ("_head.", "model.head_dim / model.head_kernel_size / model.fpn_dim"),
    ("neck.", "model.fpn_dim"),
    ("backbone.", "model.embd_dim"),
]
_MISSING_HINTS = [
    ("backbone.embd.", "model.backbone_arch[0] (number of embedding convs)"),
    ("backbone.stem.", "model.backbone_arch[1] (number of stem blocks)"),
    ("backbone.branch.", "model.backbone_arch[2] (number of branch blocks) / train_cfg.droppath"),
    ("drop_path", "train_cfg.droppath (AffineDropPath exists only when droppath > 0)"),
    ("start_head", "model.use_trident_head"),
    ("end_head", "model.use_trident_head"),
    ("norm.", "model.*_with_ln (LayerNorms exist only when enabled)"),
    ("conv.bias", "model.*_with_ln (conv biases exist only without LayerNorm)"),
    ("head.", "model.head_num_layers"),
    ("scale.", "model.backbone_arch[2] (one Scale per level)"),
]


def _hint(key: str, table: list[tuple[str, str]]) -> str:
    for frag, hint in table:
        if frag in key:
            return hint
    return "?"


# torch's legacy (non-zip) format starts with this number, pickled (torch.serialization.MAGIC_NUMBER)
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def verify_checkpoint_file(path: Path, sha256: str | None = None, allow_unverified: bool = False) -> str:
    """Check a checkpoint file's integrity before it is unpickled; returns how: "sha256", "crc32"
    or "unverified". See the module docstring; :class:`CheckpointError` naming the file otherwise."""
    if sha256 is not None:
        want = str(sha256).strip().lower()
        if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
            raise CheckpointError(f"sha256 for {path} must be 64 hex digits, got {sha256!r}")
        got = file_sha256(path)
        if got != want:
            a, b = differing_digests(got, want)
            raise CheckpointError(f"checkpoint {path}: sha256 {a} differs from the expected {b} (a different or "
                                  "damaged file); copy or download it again")
        return "sha256"
    if verify_zip_crc(path):
        return "crc32"
    with open(path, "rb") as f:
        head = f.read(64)
    if _LEGACY_MAGIC not in head[:16]:
        what = "a truncated or damaged zip" if head.startswith(b"PK") else "neither a zip nor a legacy torch file"
        raise CheckpointError(f"cannot read checkpoint {path}: {what}")
    if not allow_unverified:
        raise CheckpointError(
            f"checkpoint {path} is in torch's legacy (non-zip) format, which carries no checksum: damaged weights "
            "would load silently. Pass its expected sha256 (sha256=...), accept it unverified (allow_unverified=True, "
            "CLI --allow-unverified-checkpoint), or re-save it with torch.save (zip format, CRC-checked)")
    return "unverified"


def read_state_dict(path: str | Path, sha256: str | None = None,
                    allow_unverified: bool = False) -> dict[str, torch.Tensor]:
    """Read the weights of a reference checkpoint file (EMA weights when present), prefix stripped,
    after :func:`verify_checkpoint_file` (``sha256``, ``allow_unverified``: see there)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    verify_checkpoint_file(path, sha256, allow_unverified)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return extract_state_dict(obj, source=str(path))


def verify_zip_crc(path: Path) -> bool:
    """Check every member's CRC-32 of a zip-format checkpoint (torch >= 1.6 saves zips).

    ``torch.load`` does not check them, so a byte changed inside a tensor would load silently
    with different weights. Returns False for legacy (non-zip) files, which carry no checksum;
    raises :class:`CheckpointError` naming the first damaged member.
    """
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {exc}") from exc
    if bad is not None:
        raise CheckpointError(f"corrupt checkpoint {path}: CRC-32 mismatch in '{bad}' (damaged bytes); "
                              "copy or download it again")
    return True


def extract_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pick the state dict out of a loaded checkpoint object (``state_dict_ema`` > ``state_dict``)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a dict, got {type(obj).__name__}")
    if "state_dict_ema" in obj and obj["state_dict_ema"] is not None:
        sd = obj["state_dict_ema"]
    elif "state_dict" in obj:
        sd = obj["state_dict"]
    else:
        sd = obj
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{source}: no state dict found (keys: {list(obj)[:8]})")
    out = {}
    for key, val in sd.items():
        if not isinstance(val, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry '{key}' is a {type(val).__name__}, not a tensor: not a model state dict"
            )
        out[key[len("module."):] if key.startswith("module.") else key] = val
    return out


def load_checkpoint(model: nn.Module, path: str | Path, sha256: str | None = None,
                    allow_unverified: bool = False) -> dict[str, torch.Tensor]:
    """Load a reference checkpoint into ``model`` strictly; returns the state dict that was loaded.

    The file's integrity is checked first (module docstring): a legacy (non-zip) checkpoint needs
    its expected ``sha256`` (hex) or ``allow_unverified=True``. Raises :class:`CheckpointError`
    for a damaged or unverifiable file, and one listing missing, unexpected and wrongly shaped
    keys, each with the config field that would explain it.
    """
    sd = read_state_dict(path, sha256=sha256, allow_unverified=allow_unverified)
    load_state_dict_checked(model, sd, source=str(path))
    return sd


def load_state_dict_checked(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load with a readable report of every mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own
             if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        lines = [f"{source} does not fit the model built from this config:"]
        for k, got, want in shape[:20]:
            lines.append(f"  shape {k}: checkpoint {got} vs model {want}  -> check {_hint(k, _SHAPE_HINTS)}")
        for k in missing[:20]:
            lines.append(f"  missing {k}  -> check {_hint(k, _MISSING_HINTS)}")
        for k in unexpected[:20]:
            lines.append(f"  unexpected {k}  -> check {_hint(k, _MISSING_HINTS)}")
        counts = f"({len(shape)} wrongly shaped, {len(missing)} missing, {len(unexpected)} unexpected)"
        lines.append(f"  {counts}; is this checkpoint trained with this config?")
        raise CheckpointError("\n".join(lines))
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: parameter '{k}' contains NaN or Inf")
    model.load_state_dict(sd, strict=True)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (used to key export caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
