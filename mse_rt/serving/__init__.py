"""Beyond one process: the Ray Data corpus job (:mod:`.ray_job`), the Ray Serve HTTP endpoint
(:mod:`.ray_serve`), and a local Triton Inference Server for a model repository written by
``mse_rt.export.tritonserver_repo`` (:mod:`.tritonserver`). Ray and the server are optional."""

from .ray_cluster import init_ray, shutdown
from .ray_job import detect_corpus_ray, read_journal
from .ray_serve import build_serve_app, encode_npy_b64, request_detection, serve_detector

__all__ = ["build_serve_app", "detect_corpus_ray", "encode_npy_b64", "init_ray", "read_journal",
           "request_detection", "serve_detector", "shutdown"]
