"""Run a model repository on the tritonserver that PyTriton bundles (CPU, loopback only).

For development and tests on a machine without Docker or a GPU: the ``nvidia-pytriton`` wheel
(Linux x86-64) carries a ``tritonserver`` binary with the Python backend but without the ONNX
Runtime backend, so export the repository with ``net_backend="python"``::

    repo = export_triton_repo((cfg, ckpt), "repo", net_backend="python")
    with local_tritonserver(repo) as server:            # binds 127.0.0.1 only
        dets = triton_detect(server.grpc_url, feats_ct_padded, length, fps)

The Python backend runs the models in a stub process linked against ``libpython3.X``; it gets
this interpreter's library folder (``LD_LIBRARY_PATH``) and this environment's packages: the
stub's interpreter is isolated (it ignores ``PYTHONPATH``), so the generated ``model.py`` files
add the folders named in ``MSE_RT_TRITON_SITE`` (with their ``.pth`` files: editable installs work). Install
the server with ``pip install --no-deps nvidia-pytriton`` (its own Python package pins numpy < 2;
only its server files are used here, never imported) or point ``MSE_RT_TRITONSERVER`` at a
folder holding ``bin/tritonserver`` and ``backends/python``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendError, InputError


def find_bundled_tritonserver() -> Path | None:
    """The folder holding ``bin/tritonserver`` and ``backends/python`` (``MSE_RT_TRITONSERVER`` or
    the installed nvidia-pytriton wheel's), or None when there is none."""
    env = os.environ.get("MSE_RT_TRITONSERVER")
    if env:
        return Path(env) if (Path(env) / "bin" / "tritonserver").is_file() else None
    spec = importlib.util.find_spec("pytriton")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalServer:
    """A running server: its gRPC / HTTP addresses (127.0.0.1) and the process."""

    grpc_url: str
    http_url: str
    process: subprocess.Popen
    log: Path


def _python_env(root: Path) -> dict:
    """Environment for the Python-backend stub: this interpreter's libpython and packages, and the
    wheel's bundled libraries (the stub runs from a copy, away from its relative RPATH)."""
    paths = [p for p in site.getsitepackages() if Path(p).is_dir()]
    env = dict(os.environ)
    # the stub's interpreter is isolated (PYTHONPATH ignored); the generated model.py files add these
    env["MSE_RT_TRITON_SITE"] = os.pathsep.join(paths)
    libdirs = [sysconfig.get_config_var("LIBDIR") or "", *map(str, sorted(root.parent.parent.glob("*.libs")))]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libdirs, env.get("LD_LIBRARY_PATH", "")]).strip(os.pathsep)
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return env


@contextlib.contextmanager
def local_tritonserver(repo: str | Path, server_dir: str | Path | None = None, timeout_s: float = 120.0):
    """Start tritonserver on ``repo`` bound to 127.0.0.1 (free ports, metrics off), wait until it
    is ready, yield a :class:`LocalServer`, stop it on exit. :class:`BackendError` (with the
    server's log tail) when there is no server or it does not become ready in ``timeout_s``."""
    root = Path(server_dir) if server_dir else find_bundled_tritonserver()
    if root is None:
        raise BackendError("no tritonserver found: pip install --no-deps nvidia-pytriton (Linux x86-64), "
                           "or set MSE_RT_TRITONSERVER to a folder with bin/tritonserver and backends/python")
    repo = Path(repo)
    if not repo.is_dir():
        raise InputError(f"model repository {repo} is not a folder")
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
    with tempfile.TemporaryDirectory(prefix="mse_rt_triton_") as tmp:
        work = Path(tmp)
        backends = work / "backends"
        shutil.copytree(root / "backends", backends)
        if stub.is_file():  # PyTriton ships one stub per Python version; the backend wants it beside itself
            shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
        elif not (backends / "python" / "triton_python_backend_stub").is_file():
            raise BackendError(f"{root} has no Python-backend stub for Python {ver}")
        grpc_port, http_port = _free_port(), _free_port()
        cmd = [str(root / "bin" / "tritonserver"), f"--model-repository={repo}", f"--backend-directory={backends}",
               "--http-address=127.0.0.1", f"--http-port={http_port}", "--grpc-address=127.0.0.1",
               f"--grpc-port={grpc_port}", "--allow-metrics=false", "--allow-gpu-metrics=false",
               "--exit-on-error=true", "--strict-readiness=true", "--log-verbose=0"]
        log = work / "tritonserver.log"
        with open(log, "wb") as logf:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=_python_env(root))
            server = LocalServer(f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", proc, log)
            try:
                _wait_ready(server, timeout_s)
                yield server
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _log_tail(server: LocalServer, n: int = 30) -> str:
    try:
        return "\n".join(server.log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


_FATAL = ("error while loading shared libraries", "failed to load", "ModuleNotFoundError")


def _wait_ready(server: LocalServer, timeout_s: float) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded: polls every 0.5 s until the deadline
        if server.process.poll() is not None:
            raise BackendError(f"tritonserver exited with code {server.process.returncode}:\n{_log_tail(server)}")
        text = server.log.read_text(errors="replace") if server.log.is_file() else ""
        if any(m in text for m in _FATAL):  # a model that cannot load: the server would wait on it
            raise BackendError(f"tritonserver could not load the repository:\n{_log_tail(server)}")
        try:
            if client.is_server_ready():
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.5)
    raise BackendError(f"tritonserver was not ready after {timeout_s:g} s:\n{_log_tail(server)}")


def triton_detect(url: str, feats: np.ndarray, length: int, fps: float, model: str = "mse_rt",
                  timeout_s: float = 120.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One padded video through the repository's ensemble over gRPC.

    ``feats`` (C, T_pad) float32 padded by the reference policy (:func:`mse_rt.pipeline.padding.pad_batch`),
    ``length`` the valid steps, ``fps`` frames per second. Returns (segments (M, 2) seconds,
    scores (M,), labels (M,)), sorted by score. :class:`BackendError` when the server cannot
    be reached or fails the request.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    x = np.ascontiguousarray(feats, dtype=np.float32)[None]
    inputs = [grpcclient.InferInput("feats", list(x.shape), "FP32"),
              grpcclient.InferInput("lengths", [1, 1], "INT64"), grpcclient.InferInput("fps", [1, 1], "FP32")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(np.array([[length]], np.int64))
    inputs[2].set_data_from_numpy(np.array([[fps]], np.float32))
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("segments", "scores", "labels")]
    try:
        client = grpcclient.InferenceServerClient(url)
        res = client.infer(model, inputs, outputs=outputs, client_timeout=timeout_s)
    except InferenceServerException as exc:
        raise BackendError(f"Triton at {url} failed the request: {exc}") from exc
    scores = res.as_numpy("scores")[0]
    keep = scores >= 0  # a batch pads shorter detection lists with score -1
    return res.as_numpy("segments")[0][keep], scores[keep], res.as_numpy("labels")[0][keep]
