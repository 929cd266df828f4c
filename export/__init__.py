"""Exporters of mse_rt (installed as ``mse_rt.export``)."""
