"""Shared by the kernel tests: the dtype tolerance table and a report of where tensors differ."""

from __future__ import annotations

import torch

# dtype -> (atol, rtol) of a kernel against its float32 reference (scaled by max(1, max |ref|)).
TOL = {
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def assert_close_report(got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Kernel vs float32 reference within TOL[dtype]; for fp16 / bf16 also at most 2x the error of
    simply rounding the reference to that dtype (+ atol). Reports count, first index, max error."""
    got, ref = got.float().cpu(), ref.float().cpu()
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    atol, rtol = TOL[dtype]
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    err = (got - ref).abs()
    bad = err > atol * scale + rtol * ref.abs()
    if dtype != torch.float32:
        rounding = (ref.to(dtype).float() - ref).abs()
        bad |= err > 2 * rounding + atol * scale
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise AssertionError(f"{what} [{dtype}]: {int(bad.sum())} of {err.numel()} elements differ; first at {idx}: "
                             f"got {got[idx]:.6g} ref {ref[idx]:.6g}; max err {float(err.max()):.3e}")
