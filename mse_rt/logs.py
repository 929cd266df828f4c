"""Console logging: mse_rt's own progress lines, and the packages it drives kept quiet.

NNCF, OpenVINO, ONNX Runtime and Ray log INFO lines of their own (NNCF one per node it leaves in
float, about a hundred per quantization) that tell a user nothing they can act on. By default
those loggers show warnings and errors only; ``mse-rt --verbose`` (:func:`configure` with
``verbose=True``) shows everything. Progress bars are not logging and stay.

NNCF and Ray set their loggers' levels when imported, so :func:`quiet_third_party` is applied
again right after mse_rt imports them (NNCF: :mod:`mse_rt.runtime.backends.openvino.quantize`).
"""

from __future__ import annotations

import logging
import sys

# loggers of the packages mse_rt drives (Ray sets levels on its children when imported: named too)
THIRD_PARTY = ("nncf", "openvino", "onnxruntime", "ray", "ray.data", "ray.serve", "ray.train", "filelock", "urllib3",
               "asyncio")
_state = {"verbose": False}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the stream of the
    first call: a redirected or replaced stderr keeps working)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def verbose() -> bool:
    """Whether third-party INFO logging was asked for (``--verbose``)."""
    return _state["verbose"]


def configure(verbose: bool = False) -> None:
    """Console logging for a command: mse_rt's warnings (and its INFO lines with ``verbose``, or
    after :func:`show_progress`) as ``mse_rt.module: message`` on stderr; the third-party packages
    at WARNING unless ``verbose`` (then every logger at INFO)."""
    _state["verbose"] = bool(verbose)
    own = logging.getLogger("mse_rt")
    if not any(isinstance(h, _StderrHandler) for h in own.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        own.addHandler(handler)
    own.setLevel(logging.INFO if verbose else logging.WARNING)
    own.propagate = False  # no second copy through a root handler
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
        for name in THIRD_PARTY:
            logging.getLogger(name).setLevel(logging.INFO)
        return
    quiet_third_party()


def show_progress() -> None:
    """mse_rt's own INFO lines on the console (what ``export`` / ``quantize`` did and how long it took)."""
    logging.getLogger("mse_rt").setLevel(logging.INFO)


def quiet_third_party() -> None:
    """Third-party loggers at WARNING (no-op after ``configure(verbose=True)``); ONNX Runtime's own
    C++ log too when it is already imported."""
    if _state["verbose"]:
        return
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    ort = sys.modules.get("onnxruntime")
    if ort is not None and hasattr(ort, "set_default_logger_severity"):
        ort.set_default_logger_severity(3)  # errors only: ORT's warnings repeat per node during quantization
