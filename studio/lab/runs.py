"""Runs: named sets of restore settings that `studio evaluate` and `studio compare` put side by side.

A run is written `engine=fast,faces=gfpgan,fidelity=0.5` (any `studio restore` setting, `-` or `_`),
or as a `[[run]]` table in a TOML file (with an optional `name`). Values become settings overrides and
go through the same layering and validation as the CLI flags of `studio restore`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from studio.errors import ConfigError, UsageError
from studio.runner import prepare_settings
from studio.settings import Settings, read_toml

_SETTING_NAMES = {f.name for f in fields(Settings) if f.name != "sources"}
_SPLIT = re.compile(r",\s*(?=[A-Za-z_][\w-]*\s*=)")  # a comma starts a new key only before `key=`


@dataclass(frozen=True)
class Run:
    label: str
    overrides: dict[str, Any]


def _value(text: str) -> Any:
    """TOML-like literals: true/false, integers, floats; anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip().strip("\"'")


def _checked(overrides: dict[str, Any], where: str) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        name = key.strip().replace("-", "_")
        if name not in _SETTING_NAMES:
            raise UsageError(f"{where}: unknown setting {key!r}; use `studio restore` option names, e.g. engine=fast")
        clean[name] = value
    return clean


def parse_run(spec: str) -> Run:
    """`engine=fast,fidelity=0.5` -> Run(label=spec, overrides={"engine": "fast", "fidelity": 0.5})."""
    overrides: dict[str, Any] = {}
    for item in _SPLIT.split(spec.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--run {spec!r}: expected KEY=VALUE pairs separated by commas, e.g. engine=fast,fidelity=0.5"
            )
        overrides[key] = _value(value)
    return Run(spec.strip(), _checked(overrides, f"--run {spec!r}"))


def read_runs(path: Path) -> list[Run]:
    """`[[run]]` tables of a TOML file; `name` labels the run, every other key is a setting."""
    tables = read_toml(path).get("run")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f'{path}: expected one or more [[run]] tables, e.g. [[run]] engine = "fast"')
    runs = []
    for index, table in enumerate(tables, 1):
        settings = {k: v for k, v in table.items() if k != "name"}
        label = str(table.get("name") or ",".join(f"{k}={v}" for k, v in settings.items()) or "defaults")
        runs.append(Run(label, _checked(settings, f"{path}: run {index}")))
    return runs


def collect_runs(specs: list[str], runs_file: Path | None) -> list[Run]:
    runs = [parse_run(spec) for spec in specs] + (read_runs(runs_file) if runs_file else [])
    if not runs:
        raise UsageError("give at least one --run (e.g. --run engine=classical --run engine=fast) or --runs FILE.toml")
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise UsageError("two runs have the same settings; each run needs its own")
    return runs


def prepare_run(run: Run, fixed: dict[str, Any]) -> tuple[Settings, str]:
    """Settings and engine for a run, resolved like `studio restore` flags; `fixed` (e.g. the pairs' scale) must agree.

    A run without a seed gets seed 0, so repeated evaluations restore the same way.
    """
    for key, value in fixed.items():
        if key in run.overrides and run.overrides[key] != value:
            raise UsageError(
                f"run {run.label!r}: {key}={run.overrides[key]} conflicts with {value} (set by the inputs)"
            )
    return prepare_settings({"seed": 0, **run.overrides, **fixed})
