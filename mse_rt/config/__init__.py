"""Reference YAML configs (docs/spec/config.md): :func:`load_config` returns the merged, derived,
validated config dict; :mod:`.schema` holds the defaults and checks, :mod:`.derived` the
quantities computed from a config."""

from .derived import fpn_strides, max_buffer_len, max_div_factor, mse_win_sizes
from .load import (
    PUBLISHED_CONFIGS,
    config_from_json,
    config_to_json,
    finalize_config,
    load_config,
    published_config,
)
from .schema import DEFAULTS

__all__ = ["DEFAULTS", "PUBLISHED_CONFIGS", "config_from_json", "config_to_json", "finalize_config", "fpn_strides",
           "load_config", "max_buffer_len", "max_div_factor", "mse_win_sizes", "published_config"]
