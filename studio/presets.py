"""Prompt presets: prompts/*.toml files that bundle a prompt template, a negative prompt and
suggested parameters per engine, so that `--preset old-photo` gives a good start in one flag.

A preset file looks like this (all keys but `negative`, `variables` and `engines` are required)::

    name = "old-photo"                      # must match the file name
    description = "Scanned old photographs"
    positive = "{prompt}, old photograph of {subject}, {era}, fine film grain"
    negative = "scratches, dust, jpeg artifacts"

    [variables]                             # defaults for placeholders (--var key=value overrides)
    subject = "people"

    [engines."*"]                           # Settings fields for every engine...
    color_fix = "wavelet"
    [engines.sd-x4]                         # ...and per engine, on top of "*"
    noise_level = 40

Presets are read from the shipped prompts/ folder, then the user's folder, then each --preset-dir;
a later folder's preset replaces a same-named earlier one.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import ConfigError, UsageError
from studio.settings import Settings, apply_layer, project_root, read_toml

_TEXT_KEYS = ("name", "description", "positive", "negative")
_TABLE_KEYS = ("variables", "engines")
_REQUIRED = ("name", "description", "positive")
# Engine tables a preset may hold: every engine studio has or plans, so a misspelt table is caught
# (the registry in studio.engines is not imported here: `studio presets` must start fast).
ENGINE_TABLES = ("*", "classical", "fast", "sd-x4", "stablesr", "supir", "onestep")
# Fields a preset itself decides (or that would make it circular), so an engine table may not set them.
_NOT_PRESETTABLE = ("engine", "preset", "prompt", "negative_prompt", "variables")


@dataclass(frozen=True)
class Preset:
    """One prompt preset, validated. `engines` maps an engine name or "*" to Settings field values."""

    name: str
    description: str
    positive: str
    negative: str
    variables: dict[str, str]
    engines: dict[str, dict[str, object]]
    path: Path

    @property
    def variable_names(self) -> tuple[str, ...]:
        """The placeholders --var can fill, in template order (`prompt` comes from --prompt)."""
        names = _placeholders(self.positive) + _placeholders(self.negative)
        return tuple(dict.fromkeys(name for name in names if name != "prompt"))

    def render(self, prompt: str, variables: Mapping[str, str]) -> tuple[str, str]:
        """Fill both templates: --var values, else [variables] defaults, else "" with tidy commas.

        Returns (positive, negative); the caller appends the user's own --negative-prompt.
        """
        known = self.variable_names
        for key in variables:
            if key == "prompt":
                raise UsageError("--var prompt=...: give the prompt with --prompt instead")
            if key not in known:
                takes = ", ".join(known) if known else "no variables"
                raise UsageError(f"--var {key}=...: preset '{self.name}' has no variable '{key}' (it takes: {takes})")
        values = {**self.variables, **variables}
        for name in known:
            if name not in values:
                raise UsageError(
                    f"preset '{self.name}' ({self.path}): {{{name}}} has no value; pass --var {name}=VALUE or give "
                    f"it a default under [variables] (its variables: {', '.join(known)})"
                )
        if prompt:
            values["prompt"] = prompt
        return _fill(self.positive, values), _fill(self.negative, values)

    def parameters_for(self, engine: str) -> dict[str, object]:
        """Suggested Settings values for `engine`: the "*" table with the engine's own table on top."""
        if engine not in ENGINE_TABLES:
            raise UsageError(f"--engine {engine!r}: expected one of {', '.join(ENGINE_TABLES[1:])}")
        return {**self.engines.get("*", {}), **self.engines.get(engine, {})}


def shipped_dir() -> Path:
    """The preset library that comes with studio."""
    return project_root() / "prompts"


def user_dir() -> Path:
    """Per-user presets: $XDG_CONFIG_HOME/studio/prompts (default ~/.config/studio/prompts)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "studio" / "prompts"


def preset_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    """Folders to read, lowest priority first: shipped, per-user (if present), then each --preset-dir."""
    dirs = [folder for folder in (shipped_dir(), user_dir()) if folder.is_dir()]
    for folder in map(Path, extra):
        if not folder.is_dir():
            raise UsageError(f"--preset-dir {folder}: folder not found")
        dirs.append(folder)
    return dirs


def load_presets(extra_dirs: Sequence[Path] = ()) -> dict[str, Preset]:
    """Every preset in `preset_dirs(extra_dirs)`, by name; later folders replace earlier ones."""
    presets: dict[str, Preset] = {}
    for folder in preset_dirs(extra_dirs):
        for path in sorted(folder.glob("*.toml")):
            preset = load_preset(path)
            presets[preset.name] = preset
    return presets


def get_preset(name: str, extra_dirs: Sequence[Path] = ()) -> Preset:
    """The preset called `name`, or a UsageError that lists the available ones."""
    presets = load_presets(extra_dirs)
    if name not in presets:
        raise UsageError(f"--preset {name!r}: no such preset; available: {', '.join(sorted(presets))}")
    return presets[name]


def load_preset(path: Path) -> Preset:
    """Read and validate one preset file; every problem is a ConfigError naming the file and key."""
    data = read_toml(path)
    for key in data:
        if key not in _TEXT_KEYS + _TABLE_KEYS:
            raise ConfigError(f"{path}: unknown key '{key}' (expected {', '.join(_TEXT_KEYS + _TABLE_KEYS)})")
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{path}: missing key '{key}'")
    for key in _TEXT_KEYS:
        if not isinstance(data.get(key, ""), str):
            raise ConfigError(f"{path}: key '{key}' must be a string")
    for key in _TABLE_KEYS:
        if not isinstance(data.get(key, {}), dict):
            raise ConfigError(f"{path}: key '{key}' must be a table, e.g. [{key}]")
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: key 'name' = {data['name']!r} must match the file name '{path.stem}'")
    positive, negative = data["positive"], data.get("negative", "")
    in_positive = _checked_placeholders(positive, f"{path}: key 'positive'")
    in_negative = _checked_placeholders(negative, f"{path}: key 'negative'")
    if "prompt" not in in_positive:
        raise ConfigError(f"{path}: key 'positive' must contain {{prompt}}, where the --prompt text goes")
    return Preset(
        name=data["name"],
        description=data["description"],
        positive=positive,
        negative=negative,
        variables=_checked_variables(data.get("variables", {}), {*in_positive, *in_negative}, path),
        engines={engine: _checked_engine(engine, table, path) for engine, table in data.get("engines", {}).items()},
        path=path,
    )


def _placeholders(template: str) -> list[str]:
    """Field names of an already validated template, in order."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def _checked_placeholders(template: str, where: str) -> list[str]:
    """Placeholders of a template, each a plain {name}: no {}, {0}, {a.b}, {a!r} or {a:>10}."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed placeholder ({exc}); write {{name}}, or {{{{ }}}} for braces") from None
    names = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(f"{where}: malformed placeholder {shown}; write a plain {{name}}")
        names.append(field)
    return names


def _checked_variables(table: dict[str, Any], used: set[str], path: Path) -> dict[str, str]:
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: key 'variables.{key}' must be a string")
        if key not in used:
            raise ConfigError(f"{path}: key 'variables.{key}' is not a placeholder in positive or negative")
    return dict(table)


def _checked_engine(engine: str, table: Any, path: Path) -> dict[str, object]:
    """An engine table's values, type-checked and range-checked exactly as config files are."""
    where = f"[engines.{engine}]" if engine != "*" else '[engines."*"]'
    if engine not in ENGINE_TABLES:
        raise ConfigError(f"{path}: unknown engine table {where} (expected one of {', '.join(ENGINE_TABLES)})")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: key 'engines.{engine}' must be a table")
    names = [key.replace("-", "_") for key in table]
    for key, name in zip(table, names, strict=True):
        if name in _NOT_PRESETTABLE:
            raise ConfigError(f"{path}: {where} key '{key}' cannot be set by a preset")
    settings = apply_layer(Settings(), table, f"{path}: {where}")  # unknown fields, wrong types
    try:
        settings.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {where} {exc}") from None
    return {name: getattr(settings, name) for name in names}


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Substitute placeholders once (values are never re-parsed), then tidy what empty ones left."""
    parts: list[str] = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if field is not None:
            parts.append(values.get(field, ""))
    return _tidy("".join(parts))


def _tidy(text: str) -> str:
    """Drop empty comma-separated items and empty parentheses, collapse spaces, trim separators."""
    text = re.sub(r"\(\s*\)", " ", text)
    items = (" ".join(item.split()) for item in text.split(","))
    text = ", ".join(item for item in items if item)
    text = re.sub(r"\s+([.;:!?)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    return text.strip(" ,;")


__all__ = [
    "ENGINE_TABLES",
    "Preset",
    "get_preset",
    "load_preset",
    "load_presets",
    "preset_dirs",
    "shipped_dir",
    "user_dir",
]
