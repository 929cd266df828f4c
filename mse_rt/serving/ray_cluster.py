"""Ray for mse_rt: a local cluster on the loopback address, or an existing one, and shutdown.

Ray is optional (``pip install 'mse-rt[ray]'``). A local cluster binds 127.0.0.1 with usage
statistics and the dashboard off.
"""

from __future__ import annotations

import os

from ..errors import BackendError

# Ray and Serve: no usage statistics, no dashboard, everything on the loopback address.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise BackendError("the Ray job needs Ray: pip install 'mse-rt[ray]'") from exc
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None):
    """Connect to ``address`` (e.g. "auto" or "ray://host:10001"), or start a local cluster bound
    to 127.0.0.1 with usage statistics and the dashboard off."""
    for k, v in _RAY_ENV.items():
        os.environ.setdefault(k, v)
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, log_to_driver=False)
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
