"""Restore settings: one table declares each of them (table.py); layers resolve them (layers.py).

Each setting is one `setting(...)` field of `Settings`, holding its type, default, help, range,
help panel and the engines that read it (spec.py). The Typer options of `studio restore`, the
checks, the engines' setting lists, the shipped defaults file and the reproduce command follow
from that table. Values are resolved in layers, built-in defaults < configs/*.toml < user config
< --config < preset < flags, and each remembers the layer that set it.
"""

from studio.settings.layers import (
    apply_layer,
    layer_rank,
    project_root,
    read_toml,
    resolve,
)
from studio.settings.spec import command_args, declared_type, help_text, long_flag, spec_of
from studio.settings.table import (
    DEFAULT_MAX_PIXELS,
    PANEL_OUTPUT,
    PANEL_REMOTE,
    Settings,
    names_in_group,
    setting_fields,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PANEL_OUTPUT",
    "PANEL_REMOTE",
    "Settings",
    "apply_layer",
    "command_args",
    "declared_type",
    "help_text",
    "layer_rank",
    "long_flag",
    "names_in_group",
    "project_root",
    "read_toml",
    "resolve",
    "setting_fields",
    "spec_of",
]
