"""Shared helpers of the Triton kernel launchers: input checks and launch-time settings."""

from __future__ import annotations

import os

import torch

from mse_rt.errors import InputError

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_tensor(name: str, t: torch.Tensor, ndim: int, dtypes=SUPPORTED_DTYPES, device: torch.device | None = None):
    """Typed errors for the launchers: rank, dtype, device, and a device Triton can run on."""
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name}: expected a torch tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise InputError(f"{name}: expected {ndim} dims, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        raise InputError(f"{name}: dtype {t.dtype} not supported (use one of {', '.join(map(str, dtypes))})")
    if device is not None and t.device != device:
        raise InputError(f"{name}: on {t.device}, expected {device} like the other inputs")
    if not t.is_cuda and not interpreting():
        raise InputError(f"{name}: Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 for CPU tests), "
                         f"got a tensor on {t.device}")


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def block_size(gpu_default: int, interpret_default: int, requested: int | None = None) -> int:
    """Tile size: the caller's, else the GPU default, or a larger one in the interpreter (its cost
    is per program and per op, so fewer, bigger programs run much faster on CPU). ``tl.arange``
    needs a power of two: anything else is an :class:`InputError` here, not a compile error."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1 or requested & (requested - 1):
            raise InputError(f"block sizes must be powers of two >= 1, got {requested!r}")
        return requested
    return interpret_default if interpreting() else gpu_default


INT32_MAX = 2**31 - 1


def check_int32_slices(name: str, t: torch.Tensor) -> None:
    """The kernels index one batch element with int32 offsets (the batch offset is int64):
    refuse a tensor whose per-element span reaches 2^31 instead of wrapping silently."""
    span = sum((size - 1) * abs(stride) for size, stride in zip(t.shape[1:], t.stride()[1:]) if size > 0)
    if span > INT32_MAX:
        raise InputError(f"{name}: one batch element spans {span + 1} elements (shape {tuple(t.shape)}), beyond "
                         "the kernels' int32 indexing; split the sequence")
