"""Typed errors raised by mse_rt.

Every error a user can trigger with bad input derives from :class:`MseRtError`, so callers
can catch one class; the subclasses say which kind of input was wrong.
"""

from __future__ import annotations


class MseRtError(Exception):
    """Base class of every error mse_rt raises on purpose."""


class ConfigError(MseRtError, ValueError):
    """A config file or dict is malformed: missing required key, wrong type, bad value."""


class CheckpointError(MseRtError, ValueError):
    """A checkpoint cannot be read or does not fit the model built from the config."""


class InputError(MseRtError, ValueError):
    """Features given to a detector are unusable (shape, dtype, NaN/Inf, length)."""


class BackendError(MseRtError, RuntimeError):
    """A backend is unknown, unavailable on this machine, or failed to run."""


class ModelFileError(BackendError):
    """A model file (ONNX graph, engine) is unreadable, damaged or not an mse_rt file."""


class OutputError(MseRtError, OSError):
    """An output path cannot be written (a directory, a read-only folder, a full disk, one of the inputs)."""


class ConfigWarning(UserWarning):
    """A config key the reference does not know (usually a typo)."""


class ExportError(MseRtError, RuntimeError):
    """Export failed or produced a graph that does not validate."""


class SourceError(InputError):
    """A video / frame source cannot be opened or read, or gives unusable frames; the message names the source
    (``source``: that name)."""

    def __init__(self, message: str, source: str = ""):
        super().__init__(message)
        self.source = source


class SourceStalled(SourceError):
    """No frame arrived from a (live) source within its ``timeout`` seconds (``timeout``: that bound)."""

    def __init__(self, message: str, source: str = "", timeout: float | None = None):
        super().__init__(message, source)
        self.timeout = timeout
