"""The small interface every backend implements (load, warmup, infer with input checks).

A backend turns padded features (B, C_in, T) plus valid lengths (B,) into the head outputs of
one forward pass; decode and NMS are shared by all backends (``mse_rt.runtime.detector``).
"""

from __future__ import annotations

import abc

import torch

from ...errors import BackendError, InputError


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here; :class:`BackendError` for an unknown name, a CUDA device
    on a machine without one, or a CUDA index beyond the GPUs present."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackendError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but no CUDA GPU is available here "
                               "(torch.cuda.is_available() is False); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type != "cpu":
        raise BackendError(f"device {device!r} is not supported: use 'cpu', 'cuda' or 'cuda:N'")
    return dev


class Backend(abc.ABC):
    """Base class. Subclasses set ``name`` and implement :meth:`_infer_impl`.

    ``infer(feats (B, C_in, T) float32, lengths (B,) int64)`` returns the dense outputs of
    :class:`mse_rt.graph.DetectorGraph` as a dict: ``cls_prob``, ``seg_start``, ``seg_end``, each
    (B, P, K) torch tensors (segments in level-0 grid steps), P = sum_l T // stride_l.
    """

    name: str = "base"

    def __init__(self, cfg: dict, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.device = resolve_device(device)

    def check_inputs(self, feats: torch.Tensor, lengths: torch.Tensor) -> None:
        """Names, dtypes and shapes against what the backend was built for."""
        c_in = self.cfg["model"]["input_dim"]
        if not isinstance(feats, torch.Tensor) or feats.dim() != 3:
            raise InputError(f"{self.name}: feats must be a (B, C, T) tensor, got {getattr(feats, 'shape', feats)}")
        if feats.dtype != torch.float32:
            raise InputError(f"{self.name}: feats must be float32, got {feats.dtype}")
        if feats.shape[1] != c_in:
            raise InputError(f"{self.name}: feats have {feats.shape[1]} channels, model expects {c_in}")
        if lengths.shape != (feats.shape[0],) or lengths.dtype != torch.int64:
            raise InputError(f"{self.name}: lengths must be int64 of shape ({feats.shape[0]},)")
        if int(lengths.min()) < 1 or int(lengths.max()) > feats.shape[2]:
            raise InputError(f"{self.name}: lengths must lie in [1, T={feats.shape[2]}], got {lengths.tolist()}")

    def infer(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        """Checked forward pass; see the class docstring for shapes."""
        self.check_inputs(feats, lengths)
        return self._infer_impl(feats, lengths)

    @abc.abstractmethod
    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        """Forward pass on already checked inputs."""

    def warmup(self, batch: int = 1, length: int | None = None, iters: int = 1) -> None:
        """Run ``iters`` forward passes on zeros of (batch, C_in, length) (default max_seq_len)."""
        m = self.cfg["model"]
        length = length or m["max_seq_len"]
        feats = torch.zeros(batch, m["input_dim"], length, device=self.device)
        lengths = torch.full((batch,), length, dtype=torch.int64)
        for _ in range(iters):
            self.infer(feats, lengths)


class CudaGraphCache:  # pragma: no cover - CUDA only
    """One captured CUDA graph per input shape: ``run(fn, *inputs)`` copies the inputs into static
    buffers and replays ``fn``'s captured kernels (captured on first use after a warm-up run)."""

    def __init__(self) -> None:
        self._graphs: dict[tuple, tuple] = {}

    def run(self, fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = tuple(tuple(t.shape) for t in inputs)
        if key not in self._graphs:
            static_in = [t.clone() for t in inputs]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # compile kernels, settle shapes and the allocator
                    fn(*static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = fn(*static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        for dst, src in zip(static_in, inputs):
            dst.copy_(src)
        graph.replay()
        return tuple(t.clone() for t in static_out)
