"""Ray for mse_rt: a local cluster on the loopback address, or an existing one, and shutdown.

Ray is optional (``pip install 'mse-rt[ray]'``). A local cluster binds 127.0.0.1 with usage
statistics and the dashboard off. Connecting to an existing cluster is bounded: Ray itself retries
an unreachable address for many minutes, so the address is first probed over TCP for at most
``connect_timeout`` seconds (default :data:`CONNECT_TIMEOUT_S`, or ``$MSE_RT_RAY_CONNECT_TIMEOUT``).
"""

from __future__ import annotations

import os
import socket
import time

from ..errors import BackendError

# Seconds to wait for an existing cluster's address to accept connections (a head node that is
# still starting gets this long); $MSE_RT_RAY_CONNECT_TIMEOUT overrides it.
CONNECT_TIMEOUT_S = 30.0

# Ray and Serve: no usage statistics, no dashboard, everything on the loopback address.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise BackendError("the Ray job needs Ray: pip install 'mse-rt[ray]'") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of "host:port", "ray://host:port" or "[v6]:port"; None for "auto" and the like."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def connect_timeout_s(value: float | None = None) -> float:
    """``value``, else ``$MSE_RT_RAY_CONNECT_TIMEOUT``, else :data:`CONNECT_TIMEOUT_S` (seconds > 0)."""
    if value is None:
        env = os.environ.get("MSE_RT_RAY_CONNECT_TIMEOUT")
        try:
            value = float(env) if env else CONNECT_TIMEOUT_S
        except ValueError:
            raise BackendError(f"MSE_RT_RAY_CONNECT_TIMEOUT must be a number of seconds, got {env!r}") from None
    if not 0 < value < float("inf"):
        raise BackendError(f"the Ray connect timeout must be a positive number of seconds, got {value}")
    return float(value)


def wait_for_address(address: str, timeout: float) -> None:
    """Return once ``address`` (host:port) accepts a TCP connection; :class:`BackendError` after
    ``timeout`` seconds of refusals, or at once for a host name that does not resolve."""
    hp = _host_port(address)
    if hp is None:
        return  # "auto", "local": Ray resolves these itself and fails fast when there is nothing
    deadline = time.monotonic() + timeout
    last = None
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection(hp, timeout=max(0.1, min(left, 5.0))):
                return
        except socket.gaierror as exc:
            raise BackendError(f"Ray cluster address {address!r}: unknown host {hp[0]!r} ({exc})") from exc
        except OSError as exc:
            last = exc
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendError(f"no Ray cluster at {address!r}: nothing accepted a connection within {timeout:g} s "
                               f"({last}); is the head node running (`ray start --head`)? (timeout: "
                               "MSE_RT_RAY_CONNECT_TIMEOUT)")
        time.sleep(min(0.5, left))


def init_ray(address: str | None = None, num_cpus: int | None = None, connect_timeout: float | None = None):
    """Connect to ``address`` (e.g. "auto", "host:6379" or "ray://host:10001"), or start a local
    cluster bound to 127.0.0.1 with usage statistics and the dashboard off. An address that does
    not accept connections within ``connect_timeout`` seconds (:func:`connect_timeout_s`) raises
    :class:`BackendError` instead of waiting on Ray's own retries."""
    for k, v in _RAY_ENV.items():
        os.environ.setdefault(k, v)
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if address:
        wait_for_address(address, connect_timeout_s(connect_timeout))
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
            raise BackendError(f"cannot connect to the Ray cluster at {address!r}: {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
    return ray


def shutdown() -> None:
    """Stop Serve (if running) and Ray."""
    ray = _import_ray()
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # noqa: BLE001 - nothing to stop
        pass
    if ray.is_initialized():
        ray.shutdown()
