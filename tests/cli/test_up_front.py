"""Whatever can be known before the first pixel is checked before it, and --dry-run gives the same verdict.

Each case runs twice, as a real run and as --dry-run, and both must exit with the same code; a refused
run must not have written anything.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app

runner = CliRunner()
MODES = pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])


def studio(*args: object, dry_run: bool = False):
    extra = ["--dry-run"] if dry_run else []
    return runner.invoke(app, ["restore", *[str(a) for a in args], *extra])


@pytest.fixture
def batch(tmp_path: Path, astronaut: np.ndarray) -> Path:
    folder = tmp_path / "batch"
    folder.mkdir()
    for index in range(2):
        Image.fromarray(astronaut[index * 32 : index * 32 + 32, :32]).save(folder / f"{index}.png")
    return folder


def _written(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@MODES
def test_low_jpeg_quality_is_a_usage_error_before_any_work(tmp_path: Path, batch: Path, dry_run: bool) -> None:
    out = tmp_path / "out"
    result = studio(batch, "-o", out, "--engine", "classical", "--format", "jpg", "--quality", "90", dry_run=dry_run)
    assert result.exit_code == 2 and "--quality 90" in result.stderr and "--force-jpeg" in result.stderr
    assert _written(out) == []


@MODES
def test_missing_face_weights_asked_for_stop_the_batch_before_work(tmp_path: Path, batch: Path, dry_run: bool) -> None:
    out = tmp_path / "out"
    result = studio(batch, "-o", out, "--engine", "classical", "--faces", "gfpgan", dry_run=dry_run)
    assert result.exit_code == 3 and "studio weights pull gfpgan-1.4" in result.stderr
    assert _written(out) == []


@MODES
def test_unknown_model_is_a_usage_error_in_both_modes(tmp_path: Path, photo: Path, dry_run: bool) -> None:
    for engine in ("fast", "classical"):
        result = studio(photo, "--engine", engine, "--model", "swinir", "-o", tmp_path / "x.png", dry_run=dry_run)
        assert result.exit_code == 2, (engine, result.output)
        assert "swinir" in result.stderr
    assert not (tmp_path / "x.png").exists()


@MODES
def test_missing_engine_weights_exit_3_unless_a_fallback_is_set(tmp_path: Path, photo: Path, dry_run: bool) -> None:
    missing = tmp_path / "no-such-model"
    result = studio(photo, "--engine", "sd-x4", "--model", missing, "-o", tmp_path / "x.png", dry_run=dry_run)
    assert result.exit_code == 3 and "--fallback fast" in result.stderr
    result = studio(
        photo,
        "--engine",
        "sd-x4",
        "--model",
        missing,
        "--fallback",
        "classical",
        "-o",
        tmp_path / "y.png",
        dry_run=dry_run,
    )
    assert result.exit_code == 0, result.output
    assert "falling back to the classical engine" in result.stderr
    assert (tmp_path / "y.png").exists() != dry_run


@MODES
def test_an_output_in_the_way_fails_that_file_in_both_modes(tmp_path: Path, batch: Path, dry_run: bool) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "0.png").write_bytes(b"someone else's file")
    result = studio(batch, "-o", out, "--engine", "classical", "--scale", "2", dry_run=dry_run)
    assert result.exit_code == 1, result.output
    assert "already exists" in result.output + result.stderr
    assert (out / "0.png").read_bytes() == b"someone else's file"
    assert (out / "1.png").exists() != dry_run


@MODES
def test_a_presets_face_suggestion_without_weights_is_skipped_and_the_record_says_so(
    tmp_path: Path, photo: Path, dry_run: bool
) -> None:
    out = tmp_path / "x.png"
    result = studio(photo, "--engine", "classical", "--preset", "portrait", "-o", out, dry_run=dry_run)
    assert result.exit_code == 0, result.output
    assert "face restoration (gfpgan, from preset:portrait) skipped" in result.stderr
    if not dry_run:
        info = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)
        assert info["faces"] is None and "--faces none" in info["command"]


def test_shipped_presets_use_only_permissively_licensed_face_models() -> None:
    from studio import weights
    from studio.engines.faces.networks import DEFAULT_MODEL
    from studio.presets import load_presets

    for preset in load_presets().values():
        for engine in ("sd-x4", "fast", "classical"):
            faces = preset.parameters_for(engine).get("faces", "none")
            if faces != "none":
                licence = weights.find(DEFAULT_MODEL[faces]).license.lower()
                assert "non-commercial" not in licence, (preset.name, faces, licence)


def test_a_non_commercial_model_named_by_the_user_gets_a_notice(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio import weights

    registered = weights.find("codeformer")
    monkeypatch.setattr(weights, "resolve", lambda name, kind: photo)  # weights "on disk"; a dry run loads nothing
    assert "non-commercial" in registered.license
    result = studio(photo, "--engine", "classical", "--faces", "codeformer", dry_run=True)
    assert result.exit_code == 0, result.output
    assert "codeformer is licensed S-Lab License 1.0 (non-commercial)" in result.stderr


# ------------------------------------------------------------------ the recorded command reproduces the output


def test_an_engines_non_commercial_default_model_gets_the_notice_too(
    photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--engine stablesr` without --model runs the S-Lab (non-commercial) weights: say so, as for a named model."""
    from studio.engines.base import Availability
    from studio.engines.stablesr.engine import StableSREngine
    from studio.engines.supir.engine import SupirEngine

    for engine in (StableSREngine, SupirEngine):
        monkeypatch.setattr(engine, "availability", classmethod(lambda cls, settings: Availability(True)))
        monkeypatch.setattr(engine, "check_files", classmethod(lambda cls, settings: None))  # no files here
    result = studio(photo, "--engine", "stablesr", dry_run=True)
    assert result.exit_code == 0, result.output
    assert "stablesr-512 is licensed S-Lab License 1.0 (non-commercial)" in result.stderr
    permissive = studio(photo, "--engine", "supir", dry_run=True)  # SDXL + the Apache-2.0 tile ControlNet
    assert permissive.exit_code == 0, permissive.output
    assert "non-commercial" not in permissive.stderr


def _rerun_recorded(output: Path, again: Path) -> np.ndarray:
    """Run the command an output records (to another file) and return the new pixels."""
    info = json.loads(runner.invoke(app, ["info", str(output), "--json"]).stdout)
    args = shlex.split(info["command"])
    assert args[:2] == ["studio", "restore"]
    args[args.index("-o") + 1] = str(again)
    result = runner.invoke(app, args[1:])
    assert result.exit_code == 0, (info["command"], result.output)
    return np.asarray(Image.open(again))


@pytest.mark.parametrize(
    "engine_args",
    [
        ["--engine", "classical", "--model", "bicubic", "--scale", "3"],
        ["--engine", "fast", "--model", "realesr-animevideov3", "--scale", "2"],
        ["--engine", "sd-x4", "--model", "/missing/model", "--fallback", "classical"],
    ],
    ids=["classical", "fast", "fallback-from-sd-x4"],
)
def test_the_recorded_command_reproduces_the_pixels(tmp_path: Path, photo: Path, engine_args: list[str]) -> None:
    first = tmp_path / "first.png"
    result = studio(photo, *engine_args, "--color-fix", "adain", "-o", first)
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(app, ["info", str(first), "--json"]).stdout)
    assert "/missing" not in info["command"]
    np.testing.assert_array_equal(_rerun_recorded(first, tmp_path / "again.png"), np.asarray(Image.open(first)))


def test_the_recorded_sd_x4_command_reproduces_the_pixels(tmp_path: Path, photo: Path) -> None:
    from studio.testing.tiny_sd import (
        TINY_UNET_CONFIG,
        TINY_VAE_CONFIG,
        build_components,
        save_as_diffusers_folder,
    )

    folder = tmp_path / "tiny-sd-x4"
    save_as_diffusers_folder(build_components(TINY_UNET_CONFIG, TINY_VAE_CONFIG), folder)
    first = tmp_path / "first.png"
    result = studio(photo, "--engine", "sd-x4", "--model", folder, "--steps", "2", "--preset", "old-photo", "-o", first)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(_rerun_recorded(first, tmp_path / "again.png"), np.asarray(Image.open(first)))


# ------------------------------------------------------------------ engines describe themselves; Ctrl-C


def test_auto_order_and_fallback_come_from_the_engine_classes() -> None:
    from studio.runner.choice import auto_order, fallback_for
    from studio.settings import Settings

    order = auto_order()
    assert [cls.name for cls in order] == ["onestep", "sd-x4", "stablesr", "fast", "classical"]
    assert [cls.diffusion for cls in order] == [True, True, True, False, False]
    auto = Settings()
    assert fallback_for(auto, "sd-x4") == "fast" and fallback_for(auto, "fast") == "classical"
    assert fallback_for(auto, "classical") is None
    assert fallback_for(Settings(engine="sd-x4"), "sd-x4") is None  # explicit engines fall back only when asked


def test_ctrl_c_stops_the_batch_and_the_report_lists_what_was_done(tmp_path: Path, batch: Path) -> None:
    from studio.runner import plan_run, run_batch

    plan = plan_run({"engine": "classical", "scale": 2.0}, [batch], tmp_path / "out")

    def press_ctrl_c_after_the_first(result) -> None:
        raise KeyboardInterrupt

    report = run_batch(plan, on_job_done=press_ctrl_c_after_the_first)
    assert report.interrupted
    assert [r.status for r in report.results] == ["ok", "interrupted"]
    assert "1/2 succeeded, 1 not done (interrupted)" == report.summary()
    assert json.loads(report.to_json())["summary"]["interrupted"] == 1
    assert _written(tmp_path / "out") == [tmp_path / "out" / "0.png"]


# ------------------------------------------------------------------ small things from issue 11


def test_small_usability_fixes(tmp_path: Path, photo: Path) -> None:
    import studio as api
    from studio.errors import ConfigError, UsageError
    from studio.presets import load_preset

    with pytest.raises(ConfigError, match="unknown option 'scal'"):
        api.restore([photo], scal=2)
    with pytest.raises(ConfigError):  # --debug after the subcommand re-raises like `studio --debug restore`
        runner.invoke(app, ["restore", str(photo), "--debug", "--color-fix", "sepia"], catch_exceptions=False)
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "decades.toml").write_text(
        'name = "decades"\ndescription = "d"\npositive = "{prompt}, photo from the {decade}"\n'
    )
    with pytest.raises(UsageError, match=r"\{decade\} has no value; pass --var decade=VALUE"):
        load_preset(folder / "decades.toml").render("a cat", {})
    out = tmp_path / "x.png"
    assert studio(photo, "--engine", "classical", "-o", out).exit_code == 0
    result = studio(photo, "--engine", "classical", "-o", out, "--skip-existing")
    assert "0/1 succeeded, 1 skipped (output exists)" in result.stdout + result.stderr


def test_listings_never_truncate_names_and_all_take_json() -> None:
    from studio import weights

    listed = runner.invoke(app, ["weights", "list"], terminal_width=80).stdout
    for spec in weights.registry():
        assert spec.name in listed, spec.name
    assert "realesrgan-x4plus-anime-6b" in runner.invoke(app, ["weights", "verify"], terminal_width=80).stdout
    listed_state = {row["name"]: row["installed"] for row in _json_of("weights", "list")}
    verified = {row["name"]: row["status"] for row in _json_of("weights", "verify")}
    for name, state in listed_state.items():  # list and verify agree on bundled models
        if name not in verified:  # composites (a base + adapters) have no file of their own to verify
            continue
        assert state.startswith("bundled") == (verified[name] == "bundled"), (name, state, verified[name])
    for command in (
        ["engines"],
        ["weights", "list"],
        ["weights", "verify"],
        ["presets", "list"],
        ["presets", "show", "old-photo"],
    ):
        result = runner.invoke(app, [*command, "--json"])
        assert result.exit_code == 0, (command, result.output)
        assert json.loads(result.stdout), command


def _json_of(*command: str) -> list[dict]:
    return json.loads(runner.invoke(app, [*command, "--json"]).stdout)


# ------------------------------------------------------------------ print resolution


def _stated_dpi(path: Path) -> tuple[float, float] | None:
    from studio.io import stated_dpi

    with Image.open(path) as image:
        return stated_dpi(image)


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tiff"])
@pytest.mark.parametrize("sixteen", [False, True], ids=["8-bit", "16-bit"])
def test_print_resolution_scales_with_the_pixels_in_every_format(
    tmp_path: Path, astronaut: np.ndarray, fmt: str, sixteen: bool
) -> None:
    import tifffile

    source = tmp_path / ("in16.tif" if sixteen else "in.jpg")
    if sixteen:
        tifffile.imwrite(
            source,
            astronaut[:32, :40].astype(np.uint16) * 257,
            photometric="rgb",
            resolution=(600, 600),
            resolutionunit="INCH",
        )
    else:
        Image.fromarray(astronaut[:32, :40]).save(source, quality=95, dpi=(300, 300))
    assert _stated_dpi(source) == ((600.0, 600.0) if sixteen else (300.0, 300.0))
    out = tmp_path / f"out.{fmt}"
    result = studio(source, "--engine", "classical", "--scale", "2", "-o", out)
    assert result.exit_code == 0, result.output
    expected = 1200.0 if sixteen else 600.0  # twice the pixels on the same paper
    assert _stated_dpi(out) == (expected, expected)
    info = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)
    assert info["print_size"]["stored"]["inches"] == [round(80 / expected, 2), round(64 / expected, 2)]
    fixed = tmp_path / f"fixed.{fmt}"
    assert studio(source, "--engine", "classical", "--scale", "2", "--dpi", "150", "-o", fixed).exit_code == 0
    assert _stated_dpi(fixed) == (150.0, 150.0)
