"""The settings table is the one declaration of every restore setting: options, help, checks, shipped
defaults, engine setting lists and reproduce commands all follow from it."""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import MISSING, Field
from pathlib import Path
from typing import Any

import pytest
import typer
from support import REPO
from typer.testing import CliRunner

import studio
from studio.cli import app
from studio.cli.restore import RUN_OPTIONS, settings_from_flags
from studio.engines.base import ADAPTER_SETTINGS, DIFFUSION_SETTINGS, SAMPLING_SETTINGS, Engine
from studio.errors import ConfigError
from studio.runner import reproduce_command
from studio.settings import Settings, apply_layer, declared_type, long_flag, resolve, setting_fields, spec_of

RESTORE = typer.main.get_command(app).commands["restore"]  # type: ignore[attr-defined]
OPTIONS = {name: param for param in RESTORE.params for name in param.opts + param.secondary_opts}


class ReadsEverySetting(Engine):
    """An engine that reads every diffusion setting, so that the reproduce command leaves none out."""

    name = "reads-all"
    summary = "test stub"
    diffusion = True

    @classmethod
    def used_settings(cls) -> frozenset[str]:
        return DIFFUSION_SETTINGS

    def restore(self, image: Any, scale: float, progress: Any = None) -> Any:
        raise NotImplementedError


def _other_value(item: Field) -> Any:
    """A valid value other than the field's default, chosen from the table alone."""
    spec, kind = spec_of(item), declared_type(item)
    if spec.choices is not None:
        return next(choice for choice in spec.choices if choice != item.default)
    if kind == "bool":
        return not item.default
    if kind in ("int", "float"):
        value = spec.high if spec.high is not None else (spec.low or 0) + 3
        return int(value) if kind == "int" else float(value)
    return {"str": "x", "list[str]": ["a", "b"], "list[float]": [0.25, 0.75], "dict[str, str]": {"k": "v"}}[kind]


def test_every_setting_has_an_option_of_the_restore_command() -> None:
    missing = [item.name for item in setting_fields() if long_flag(item) not in OPTIONS]
    assert missing == []


def test_every_reproduced_setting_round_trips_through_its_recorded_command() -> None:
    values = {item.name: _other_value(item) for item in setting_fields() if spec_of(item).reproduce}
    values["model"] = values["ensemble"][0]  # an ensemble's first member is its model
    settings = apply_layer(Settings(), values, "cli")
    settings.validate()
    command = reproduce_command(Path("in.png"), Path("out"), settings, ReadsEverySetting)
    args = shlex.split(command)
    for name, value in values.items():
        assert value != getattr(Settings(), name), name  # each value is visible in the command
    context = RESTORE.make_context("restore", args[2:])
    assert context.params["output"] == "out" and context.params["inputs"] == [Path("in.png")]
    flags = {name: value for name, value in context.params.items() if name not in (*RUN_OPTIONS, "inputs")}
    again = resolve(settings_from_flags(flags))
    assert {name: getattr(again, name) for name in values} == values, command


def test_the_help_shows_every_default() -> None:
    for item in setting_fields():
        default = item.default
        if default is MISSING or default is None or default == "":
            continue
        shown = spec_of(item).shown_default or (
            ("on" if default else "off")
            if isinstance(default, bool)
            else (f"{default:g}" if isinstance(default, float) else str(default))
        )
        assert f"Default: {shown}." in OPTIONS[long_flag(item)].help, item.name
    text = CliRunner().invoke(app, ["restore", "--help"], terminal_width=250).stdout
    assert "Default: 25." in text and "Default: 178956970." in text and "--min-face-size" in text


@pytest.mark.parametrize(
    ("key", "value", "flag", "message"),
    [
        ("scale", 20.0, "20", "--scale 20.0: expected a factor from 0.25 to 16"),
        ("steps", 0, "0", "--steps 0: expected 1 to 1000"),
        ("tile", 16, "16", "--tile 16: expected 0 (off) or at least 32 pixels"),
        (
            "color_fix",
            "sepia",
            "sepia",
            "--color-fix 'sepia': expected one of none, wavelet, wavelet-dwt, adain, histogram, lab",
        ),
    ],
)
def test_a_bad_value_is_refused_with_one_line_by_the_cli_a_config_file_and_the_api(
    tmp_path: Path, photo: Path, key: str, value: Any, flag: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f"[restore]\n{key} = {value!r}\n".replace("'", '"'))
    runner = CliRunner()
    for args in (["--" + key.replace("_", "-"), flag], ["--config", str(config)]):
        result = runner.invoke(app, ["restore", str(photo), "--engine", "classical", *args, "--dry-run"])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == f"error: {message}"
    for call in ({key: value}, {"config": config}):
        with pytest.raises(ConfigError) as caught:
            studio.load_settings(**call)
        assert str(caught.value) == message


def test_every_range_is_checked_from_the_table() -> None:
    for item in setting_fields():
        spec = spec_of(item)
        if spec.low is None:
            continue
        below = spec.low - 1
        with pytest.raises(ConfigError) as caught:
            apply_layer(Settings(), {item.name: below}, "cli").validate()
        assert str(caught.value).startswith(f"{long_flag(item)} ") and ": expected " in str(caught.value)
        assert "\n" not in str(caught.value)
        if spec.off is not None:
            apply_layer(Settings(), {item.name: spec.off}, "cli").validate()  # the value that turns it off


def test_the_engines_setting_lists_come_from_the_table() -> None:
    groups = {spec_of(item).group for item in setting_fields()}
    assert groups == {None, "sampling", "adapter", "stablesr", "supir", "onestep"}  # a misspelt group reaches no engine
    assert DIFFUSION_SETTINGS == {item.name for item in setting_fields() if spec_of(item).group}
    assert {"steps", "prompt", "offload"} <= SAMPLING_SETTINGS and "stage1" in ADAPTER_SETTINGS


def test_the_shipped_defaults_file_restates_no_default() -> None:
    shipped = tomllib.loads((REPO / "configs" / "defaults.toml").read_text())
    assert shipped["restore"] == {}  # the table declares every default; the file stays a layer for packagers
    assert resolve({}).sources == {}  # so an untouched value says "default", not a file
