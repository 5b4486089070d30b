"""Settings resolved in layers: built-in defaults < configs/*.toml < user config < --config < preset < flags.

Every resolved value remembers which layer set it, so `--dry-run` and the report can say why a value
is what it is, and the engines and the reproduce command can tell a choice from a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from studio.errors import ConfigError
from studio.settings.spec import declared_type
from studio.settings.table import Settings, setting_fields

_FIELDS = {item.name: item for item in setting_fields()}

_TYPES: dict[str, tuple[type, ...]] = {
    "float": (int, float),
    "int": (int,),
    "bool": (bool,),
    "str": (str,),
    "dict[str, str]": (dict,),
    "list[str]": (list,),
    "list[float]": (list,),
}
_ITEM_TYPES: dict[str, tuple[type, ...]] = {"list[str]": (str,), "list[float]": (int, float)}


def _coerce(name: str, value: Any, origin: str) -> Any:
    """Check a TOML value against the field's declared type; the error names the file and key."""
    declared = declared_type(_FIELDS[name])
    expected = _TYPES[declared]
    if (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
        raise ConfigError(f"{origin}: key '{name}' = {value!r}: expected {declared}")
    if declared.startswith("dict") and not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{origin}: key '{name}': every value must be a string (write era = \"1950s\")")
    if declared in _ITEM_TYPES:
        if not all(isinstance(v, _ITEM_TYPES[declared]) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{origin}: key '{name}' = {value!r}: expected {declared}")
        return [float(v) for v in value] if declared == "list[float]" else list(value)
    return float(value) if declared == "float" else value


def layer_rank(source: str) -> int:
    """Order of the layers a value can come from: 0 built-in default (or a decision such as a fallback,
    a random seed) ... 5 command line. A value any config file sets counts as chosen (rank 2)."""
    for rank, prefix in ((1, "user:"), (2, "config:"), (3, "preset:"), (5, "cli")):
        if source.startswith(prefix):
            return rank
    return 0


def apply_layer(settings: Settings, values: Mapping[str, Any], origin: str) -> Settings:
    """Return a copy of `settings` with `values` applied on top, recording `origin` for each key."""
    updates: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            if origin == "cli":  # the command line and the Python API's keyword arguments
                raise ConfigError(f"unknown option '{key}' (known: {', '.join(_FIELDS)})")
            raise ConfigError(f"{origin}: unknown key '{key}'")
        if value is None:
            continue
        updates[name] = _coerce(name, value, origin)
    new = dataclasses.replace(settings, **updates)
    new.sources = dict(settings.sources)
    for name in updates:
        new.sources[name] = origin
    return new


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax errors into one line that names the file."""
    import tomllib  # only when a file is read: `studio --help` needs the settings table, not the parser

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def project_root() -> Path:
    """The folder holding prompts/ and configs/: the package's data copy in a wheel, else the checkout."""
    package = Path(__file__).resolve().parents[1]
    bundled = package / "_data"
    return bundled if bundled.is_dir() else package.parent


def builtin_config_files() -> list[Path]:
    """The shipped engine defaults (configs/defaults.toml). The weights registry is read by studio.weights."""
    path = project_root() / "configs" / "defaults.toml"
    return [path] if path.is_file() else []


def user_config_file() -> Path:
    """Per-user config: $STUDIO_CONFIG, else $XDG_CONFIG_HOME/studio/config.toml."""
    if env := os.environ.get("STUDIO_CONFIG"):
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "studio" / "config.toml"


def _restore_table(data: dict[str, Any], origin: str) -> dict[str, Any]:
    """Config files keep job settings under [restore]; other tables are ignored here."""
    table = data.get("restore", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: [restore] must be a table")
    return table


def resolve(
    cli: Mapping[str, Any],
    config_file: Path | None = None,
    preset_values: Mapping[str, Any] | None = None,
    preset_origin: str = "preset",
) -> Settings:
    """Layer defaults < configs/*.toml < user config < --config < preset < CLI flags, then validate.

    `cli` holds only the flags the user actually gave (None means "not given").
    """
    settings = Settings()
    for path in builtin_config_files():
        settings = apply_layer(settings, _restore_table(read_toml(path), str(path)), f"config:{path.name}")
    user_file = user_config_file()
    if user_file.is_file():
        settings = apply_layer(settings, _restore_table(read_toml(user_file), str(user_file)), f"user:{user_file}")
    if config_file is not None:
        settings = apply_layer(
            settings, _restore_table(read_toml(config_file), str(config_file)), f"config:{config_file}"
        )
    if preset_values:
        settings = apply_layer(settings, preset_values, preset_origin)
    settings = apply_layer(settings, {k: v for k, v in cli.items() if v is not None}, "cli")
    settings.validate()
    return settings
