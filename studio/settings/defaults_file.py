"""configs/defaults.toml, written from the settings table so that the shipped file cannot drift from it.

The file only writes the built-in values down, commented out: copy a line into your own config to
change it. Regenerate it with `python -m studio.settings.defaults_file > configs/defaults.toml`.
"""

from __future__ import annotations

import json
from dataclasses import MISSING
from typing import Any

from studio.settings.table import setting_fields

HEADER = """\
# Built-in values of the restore settings, for reference (generated from studio/settings/table.py by
# `python -m studio.settings.defaults_file > configs/defaults.toml`; settings left out have no fixed value).
# Layering: built-in defaults < configs/*.toml < your user config (~/.config/studio/config.toml)
# < --config FILE < preset < command-line flags. Keys are `studio restore` option names; a key written
# here without the leading '#' counts as configured, like one in any other config file.
[restore]
"""


def render_defaults() -> str:
    """The text of configs/defaults.toml: one commented `name = value` line per setting with a default."""
    lines = [f"# {item.name} = {_toml(item.default)}" for item in setting_fields() if _has_value(item.default)]
    return HEADER + "\n".join(lines) + "\n"


def _has_value(default: Any) -> bool:
    return default is not MISSING and default is not None and default != ""


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


if __name__ == "__main__":
    print(render_defaults(), end="")
