"""The small interface every backend implements (load, warmup, infer with input checks).

A backend turns padded features (B, C_in, T) plus valid lengths (B,) into the head outputs of
one forward pass; decode and NMS are shared by all backends (``mse_rt.runtime.detector``).
"""

from __future__ import annotations

import abc
from collections import OrderedDict

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
    :class:`mse_rt.model.detector_graph.DetectorGraph` as a dict: ``cls_prob``, ``seg_start``, ``seg_end``, each
    (B, P, K) torch tensors (segments in level-0 grid steps), P = sum_l T // stride_l.
    """

    name: str = "base"
    # True: the Detector hands feats over as a (B, C, T) view of a contiguous (B, T, C) buffer
    # (mse_rt.pipeline.padding.pad_batch(time_first=True)), which spares a transposing copy for engines
    # that take time-first input; the values and the (B, C, T) shape are the same either way
    prefers_time_first: bool = False

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
        if self.prefers_time_first:
            feats = torch.zeros(batch, length, m["input_dim"], device=self.device).transpose(1, 2)
        else:
            feats = torch.zeros(batch, m["input_dim"], length, device=self.device)
        lengths = torch.full((batch,), length, dtype=torch.int64)
        for _ in range(iters):
            self.infer(feats, lengths)


class ShapeLRU:
    """A bounded least-recently-used cache keyed by input shapes (pure Python, testable on CPU).

    ``get(key)`` returns the cached entry, building it with ``build(key)`` on a miss; beyond
    ``capacity`` entries the least recently used one is dropped (``on_evict(entry)`` is called).
    """

    def __init__(self, capacity: int, build, on_evict=None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._build = build
        self._on_evict = on_evict
        self._entries: OrderedDict = OrderedDict()
        self.builds = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def get(self, key):
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        entry = self._build(key)
        self.builds += 1
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            _, old = self._entries.popitem(last=False)
            self.evictions += 1
            if self._on_evict is not None:
                self._on_evict(old)
        return entry


class CudaGraphCache:  # pragma: no cover - CUDA only
    """Captured CUDA graphs per input shape: ``run(fn, *inputs)`` copies the inputs into static
    buffers and replays ``fn``'s captured kernels (captured on first use after a warm-up run).

    All graphs share one memory pool (``torch.cuda.graph_pool_handle``) instead of one private
    pool each, and at most ``capacity`` graphs are kept (LRU): many padded lengths no longer
    exhaust GPU memory. Sharing is safe here because replays are sequential on one stream and
    each replay's outputs are cloned before any other graph runs. ``make_context(key)``, when
    given, builds per-shape state passed to ``fn`` as its first argument (TensorRT: one
    execution context per captured shape, since a graph bakes in its context's addresses).
    """

    def __init__(self, capacity: int = 8, make_context=None) -> None:
        self._pool = torch.cuda.graph_pool_handle()
        self._make_context = make_context
        self._fn = None
        self._inputs: tuple = ()
        self.cache = ShapeLRU(capacity, self._capture)

    def _capture(self, key):
        fn = self._fn
        ctx = self._make_context(key) if self._make_context is not None else None
        call = (lambda *a: fn(ctx, *a)) if ctx is not None else fn
        static_in = [t.clone() for t in self._inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # compile kernels, settle shapes and the allocator
                call(*static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            static_out = call(*static_in)
        return graph, static_in, static_out, ctx

    def run(self, fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = tuple(tuple(t.shape) for t in inputs)
        self._fn, self._inputs = fn, inputs
        graph, static_in, static_out, _ = self.cache.get(key)
        self._inputs = ()
        for dst, src in zip(static_in, inputs):
            dst.copy_(src)
        graph.replay()
        return tuple(t.clone() for t in static_out)
