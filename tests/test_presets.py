"""Prompt presets: the shipped library, rendering, folder overrides, validation errors, the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from studio.cli.presets import app
from studio.errors import ConfigError, UsageError
from studio.presets import (
    ENGINE_TABLES,
    get_preset,
    load_preset,
    load_presets,
    preset_dirs,
    shipped_dir,
)
from studio.settings import Settings, apply_layer

SHIPPED = (
    "old-photo", "portrait", "landscape", "product", "anime", "text-document", "print-max-detail", "faithful",
    "supir-quality", "supir-fidelity",
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_user_presets(tmp_path, monkeypatch):
    """Keep the developer's own ~/.config/studio/prompts out of every test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(body))
    return path


MINIMAL = """
name = "{name}"
description = "{description}"
positive = "{{prompt}}, {{subject}}"
"""


def test_every_shipped_preset_loads_renders_and_suits_every_engine():
    presets = load_presets()
    assert set(SHIPPED) <= set(presets)
    for name, preset in presets.items():
        assert preset.path.parent == shipped_dir()
        positive, negative = preset.render("a red bicycle", {})
        assert positive.startswith("a red bicycle, ")
        assert negative and "{" not in positive + negative
        assert ", ," not in positive and not positive.endswith(",")
        bare, _ = preset.render("", {})
        assert bare and not bare.startswith(",")
        for engine in ENGINE_TABLES[1:]:
            values = preset.parameters_for(engine)
            apply_layer(Settings(), values, name).validate()  # the runner layers them exactly like this


def test_shipped_parameters_follow_the_guides_ranges():
    presets = load_presets()
    for preset in presets.values():
        if preset.name.startswith("supir-"):  # SUPIR's own settings, for the supir engine only
            continue
        sd = preset.parameters_for("sd-x4")
        assert 20 <= sd["steps"] <= 50 and 2.0 <= sd["guidance"] <= 6.0 and 20 <= sd["noise_level"] <= 50
        assert 0.0 <= preset.parameters_for("supir")["strength"] <= 1.0
    faithful, detail = presets["faithful"], presets["print-max-detail"]
    assert faithful.parameters_for("supir")["strength"] <= 0.3  # the guide's fidelity band
    assert detail.parameters_for("supir")["strength"] >= 0.7  # the guide's quality band
    assert faithful.parameters_for("sd-x4")["noise_level"] < detail.parameters_for("sd-x4")["noise_level"]
    assert faithful.parameters_for("stablesr")["fidelity"] > detail.parameters_for("stablesr")["fidelity"]
    assert presets["anime"].parameters_for("fast")["model"] == "realesrgan-x4plus-anime-6b"
    quality, fidelity = (
        presets["supir-quality"].parameters_for("supir"),
        presets["supir-fidelity"].parameters_for("supir"),
    )
    assert (quality["cfg_start"], quality["guidance"]) == (4.0, 7.5)  # SUPIR's options/SUPIR_v0.yaml
    assert (fidelity["cfg_start"], fidelity["guidance"]) == (1.0, 4.0)


def test_variables_fill_from_vars_then_defaults_then_empty():
    preset = get_preset("old-photo")
    default, _ = preset.render("a family", {})
    assert "old photograph of people" in default
    filled, _ = preset.render("a family", {"era": "1950s", "subject": "two sisters"})
    assert filled.startswith("a family, restored old photograph of two sisters, 1950s, ")
    assert "people" not in filled


def test_empty_variables_leave_tidy_text(tmp_path):
    folder = tmp_path / "extra"
    _write(
        folder,
        "tidy",
        """
        name = "tidy"
        description = "d"
        positive = "{prompt} , photo of {subject} ({era}),  {style}, sharp focus {mood}."
        negative = "{style}, blurry"

        [variables]
        subject = ""
        era = ""
        style = ""
        mood = ""
        """,
    )
    preset = get_preset("tidy", [folder])
    assert preset.render("", {}) == ("photo of, sharp focus.", "blurry")
    assert preset.render("a dog", {"era": "1950s", "style": "noir"}) == (
        "a dog, photo of (1950s), noir, sharp focus.",
        "noir, blurry",
    )


def test_values_are_inserted_verbatim_not_reparsed():
    positive, _ = get_preset("portrait").render("a {subject} with {braces}", {})
    assert positive.startswith("a {subject} with {braces}, portrait photograph of a person")


def test_unknown_or_misused_variables_are_usage_errors():
    preset = get_preset("old-photo")
    expected = r"--var colour=\.\.\.: preset 'old-photo' has no variable 'colour' \(it takes: subject, era\)"
    with pytest.raises(UsageError, match=expected):
        preset.render("", {"colour": "red"})
    with pytest.raises(UsageError, match="--prompt"):
        preset.render("", {"prompt": "x"})


def test_parameters_for_merges_star_under_the_engine_table():
    preset = get_preset("anime")
    assert preset.parameters_for("fast") == {
        "color_fix": "wavelet",
        "faces": "none",
        "model": "realesrgan-x4plus-anime-6b",
    }
    assert preset.parameters_for("classical") == {"color_fix": "wavelet", "faces": "none"}
    with pytest.raises(UsageError, match="--engine 'sdx4'"):
        preset.parameters_for("sdx4")


def test_engine_table_overrides_star(tmp_path):
    folder = tmp_path / "p"
    _write(
        folder,
        "mine",
        MINIMAL.format(name="mine", description="d")
        + '[engines."*"]\nsteps = 10\ncolor-fix = "adain"\n[engines.sd-x4]\nsteps = 30\n',
    )
    preset = get_preset("mine", [folder])
    assert preset.parameters_for("sd-x4") == {"steps": 30, "color_fix": "adain"}
    assert preset.parameters_for("supir") == {"steps": 10, "color_fix": "adain"}


def test_user_folder_then_preset_dirs_override_shipped(tmp_path, monkeypatch):
    xdg = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    user = xdg / "studio" / "prompts"
    _write(user, "portrait", MINIMAL.format(name="portrait", description="mine"))
    _write(user, "pets", MINIMAL.format(name="pets", description="cats and dogs"))
    extra = tmp_path / "extra"
    _write(extra, "pets", MINIMAL.format(name="pets", description="project pets"))

    assert preset_dirs([extra]) == [shipped_dir(), user, extra]
    presets = load_presets([extra])
    assert presets["portrait"].description == "mine" and presets["portrait"].path.parent == user
    assert presets["pets"].description == "project pets"
    assert presets["anime"].path.parent == shipped_dir()
    assert load_presets()["pets"].description == "cats and dogs"


def test_default_user_folder_is_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    user = tmp_path / ".config" / "studio" / "prompts"
    assert preset_dirs() == [shipped_dir()]
    _write(user, "pets", MINIMAL.format(name="pets", description="d"))
    assert preset_dirs() == [shipped_dir(), user]


def test_missing_preset_dir_and_unknown_preset_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match=f"--preset-dir {tmp_path / 'nope'}: folder not found"):
        load_presets([tmp_path / "nope"])
    with pytest.raises(UsageError, match="'old-foto': no such preset; available: anime, faithful, landscape"):
        get_preset("old-foto")


HEAD = 'name = "x"\ndescription = "d"\n'
OK = HEAD + 'positive = "{prompt}"\n'
BROKEN = [
    (OK + "colour = 1\n", "unknown key 'colour'"),
    (HEAD, "missing key 'positive'"),
    ('name = "x"\ndescription = 3\npositive = "{prompt}"\n', "key 'description' must be a string"),
    ('name = "y"\ndescription = "d"\npositive = "{prompt}"\n', "key 'name' = 'y' must match the file name 'x'"),
    (HEAD + 'positive = "a photo"\n', "key 'positive' must contain {prompt}"),
    (HEAD + 'positive = "{prompt}, {era"\n', "key 'positive': malformed placeholder"),
    (HEAD + 'positive = "{prompt}, {era!r}"\n', "key 'positive': malformed placeholder {era!r}"),
    (OK + 'negative = "{0}"\n', "key 'negative': malformed placeholder {0}"),
    (OK + 'negative = "{}"\n', "key 'negative': malformed placeholder {}"),
    (HEAD + 'positive = "{prompt} {a}"\n[variables]\na = 1\n', "key 'variables.a' must be a string"),
    (OK + '[variables]\nera = "old"\n', "key 'variables.era' is not a placeholder"),
    (OK + 'variables = "a"\n', "key 'variables' must be a table"),
    (OK + "[engines.sdx4]\nsteps = 2\n", "unknown engine table [engines.sdx4]"),
    (OK + "[engines]\nfast = 2\n", "key 'engines.fast' must be a table"),
    (OK + "[engines.sd-x4]\nstepz = 2\n", "[engines.sd-x4]: unknown key 'stepz'"),
    (OK + '[engines.supir]\nsteps = "many"\n', "[engines.supir]: key 'steps' = 'many': expected int"),
    (OK + '[engines."*"]\nfidelity = 1.5\n', '[engines."*"] --fidelity 1.5: expected a value from 0 to 1'),
    (OK + '[engines."*"]\ncolor_fix = "sepia"\n', "--color-fix 'sepia'"),
    (OK + '[engines.fast]\nprompt = "hi"\n', "[engines.fast] key 'prompt' cannot be set by a preset"),
    (HEAD + 'positive = "{prompt}\n', "invalid TOML"),
]


@pytest.mark.parametrize("body, message", BROKEN)
def test_validation_errors_name_the_file_and_the_key(tmp_path, body, message):
    path = tmp_path / "x.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_preset(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_broken_preset_in_a_preset_dir_is_reported_when_loading(tmp_path):
    folder = tmp_path / "extra"
    _write(folder, "bad", 'name = "bad"\ndescription = "d"\npositive = "no prompt here"\n')
    with pytest.raises(ConfigError, match="bad.toml: key 'positive' must contain"):
        load_presets([folder])


def test_cli_list_shows_every_preset_and_its_folder(tmp_path):
    extra = tmp_path / "extra"
    _write(extra, "pets", MINIMAL.format(name="pets", description="cats and dogs"))
    result = CliRunner().invoke(app, ["list", "--preset-dir", str(extra)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in (*SHIPPED, "pets"):
        assert name in result.output
    assert "cats and dogs" in result.output and str(extra) in result.output


def test_cli_show_renders_prompts_and_engine_parameters():
    result = CliRunner().invoke(
        app,
        ["show", "old-photo", "--prompt", "a family", "--var", "era=1950s", "--engine", "sd-x4"],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    assert "positive: a family, restored old photograph of people, 1950s, clean scan" in result.output
    assert "negative: scratches, dust" in result.output
    assert "noise_level = 40" in result.output and "face_fidelity = 0.5" in result.output
    assert "supir" not in result.output


def test_cli_show_without_engine_lists_every_table():
    result = CliRunner().invoke(app, ["show", "anime"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for engine in ("*", "fast", "sd-x4", "stablesr", "supir"):
        assert f"│ {engine} " in result.output


@pytest.mark.parametrize(
    "args, error",
    [
        (["show", "nope"], "no such preset"),
        (["show", "anime", "--var", "subject"], "expected KEY=VALUE"),
        (["show", "anime", "--var", "era=1950s"], "no variable 'era'"),
        (["show", "anime", "--engine", "turbo"], "--engine 'turbo'"),
        (["list", "--preset-dir", "/nonexistent/presets"], "folder not found"),
    ],
)
def test_cli_lets_usage_errors_reach_the_top_level_handler(args, error):
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UsageError)
    assert error in str(result.exception)


def test_presets_cli_imports_no_heavy_packages():
    code = "import sys, studio.cli.presets; print(sorted(m for m in ('numpy', 'torch', 'skimage') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
