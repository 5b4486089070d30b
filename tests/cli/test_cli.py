"""The `studio` command end to end with the classical engine: exit codes, messages, batches, reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from studio.cli import app

runner = CliRunner()


def studio(*args: str) -> CliRunner.invoke:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_restore_writes_next_to_the_input_with_provenance(photo: Path) -> None:
    result = studio("restore", photo, "--engine", "classical", "--scale", "2")
    assert result.exit_code == 0, result.output
    assert "1/1 succeeded" in result.stderr
    out = photo.with_name("photo_restored.png")
    with Image.open(out) as image:
        assert image.size == (128, 96)
    info = studio("info", out, "--json")
    data = json.loads(info.stdout)
    assert data["engine"] == "classical" and data["settings"]["scale"] == 2.0
    assert data["command"].startswith("studio restore") and "--scale 2.0" in data["command"]
    assert not out.with_name("photo_restored.png.json").exists()
    assert studio("restore", photo, "--engine", "classical", "--overwrite", "--sidecar").exit_code == 0
    sidecar = json.loads(out.with_name("photo_restored.png.json").read_text())
    assert sidecar["engine"] == "classical" and sidecar["settings"]["scale"] == 4.0


def test_fractional_scale_tiff_output_named_by_o(tmp_path: Path, photo: Path) -> None:
    out = tmp_path / "big.tif"
    result = studio("restore", photo, "--engine", "classical", "--scale", "3", "--format", "tiff", "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.format == "TIFF" and image.size == (192, 144)
    out2 = tmp_path / "frac.png"
    assert studio("restore", photo, "--engine", "classical", "--scale", "1.5", "-o", out2).exit_code == 0
    with Image.open(out2) as image:
        assert image.size == (96, 72)


def test_batch_goes_on_past_a_corrupt_file_and_reports(tmp_path: Path, astronaut: np.ndarray) -> None:
    shots = tmp_path / "shots"
    (shots / "sub").mkdir(parents=True)
    Image.fromarray(astronaut[:64, :64]).save(shots / "a.png")
    (shots / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(astronaut[64:128, :64]).save(shots / "sub" / "c.jpg")
    single = tmp_path / "single.png"
    Image.fromarray(astronaut[:32, :32]).save(single)
    out = tmp_path / "out"
    result = studio("restore", single, shots, "-o", out, "--engine", "classical", "--scale", "2")
    assert result.exit_code == 1
    assert (out / "single.png").exists()
    assert (out / "shots" / "a.png").exists() and (out / "shots" / "sub" / "c.png").exists()
    assert not (out / "shots" / "b_corrupt.png").exists()
    report = json.loads((out / "studio_report.json").read_text())
    assert report["summary"] == {"total": 4, "succeeded": 3, "failed": 1, "skipped": 0, "interrupted": 0}
    failed = [f for f in report["files"] if f["status"] == "failed"]
    assert failed[0]["input"].endswith("b_corrupt.jpg") and "corrupt" in failed[0]["error"]
    ok = [f for f in report["files"] if f["status"] == "ok"]
    assert all(f["engine"] == "classical" and f["output_size"] and f["seconds"] >= 0 for f in ok)
    assert "3/4 succeeded, 1 failed" in result.stderr


def test_skip_existing_resumes_and_overwrite_replaces(tmp_path: Path, photo: Path) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"earlier result")
    result = studio("restore", photo, "--engine", "classical", "-o", out)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert out.read_bytes() == b"earlier result"
    result = studio("restore", photo, "--engine", "classical", "-o", out, "--skip-existing")
    assert result.exit_code == 0 and out.read_bytes() == b"earlier result"
    result = studio("restore", photo, "--engine", "classical", "-o", out, "--overwrite")
    assert result.exit_code == 0 and out.read_bytes().startswith(b"\x89PNG")


def test_input_is_never_overwritten(photo: Path) -> None:
    before = photo.read_bytes()
    result = studio("restore", photo, "--engine", "classical", "-o", photo, "--overwrite", "--format", "jpg")
    assert result.exit_code == 1 and "never overwrites inputs" in result.stderr
    assert photo.read_bytes() == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"plain text"), "not an image"),
    ],
)
def test_bad_input_is_one_line_exit_1(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.png"
    make(path)
    result = studio("restore", path, "--engine", "classical")
    assert result.exit_code == 1
    assert any(message in line for line in result.stderr.splitlines())
    assert "Traceback" not in result.output


def test_folder_without_images_fails_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    result = studio("restore", empty, "--engine", "classical")
    assert result.exit_code == 1 and "holds no supported images" in result.stderr


def test_pixel_budget_flag(tmp_path: Path, photo: Path) -> None:
    result = studio("restore", photo, "--engine", "classical", "--max-pixels", "1000")
    assert result.exit_code == 1 and "--max-pixels" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--color-fix", "sepia"], 2, "--color-fix 'sepia'"),
        (["--engine", "dreamy"], 2, "--engine 'dreamy'"),
        (["--scale", "40"], 2, "--scale 40"),
        (["--var", "novalue"], 2, "KEY=VALUE"),
        (["--skip-existing", "--overwrite"], 2, "contradict"),
        (["-o", "out.tif", "--format", "png"], 2, "make them agree"),
        (["-o", "out.bmp"], 2, "not .bmp"),
        (["--offload", "gpu"], 2, "--offload 'gpu'"),
        (["--device", "cuda"], 3, "no CUDA GPU"),
    ],
)
def test_usage_and_environment_errors_have_their_exit_codes(
    photo: Path, args: list[str], code: int, message: str
) -> None:
    engine = [] if "--engine" in args else ["--engine", "classical"]
    result = studio("restore", photo, *engine, *args)
    assert result.exit_code == code, result.output
    lines = _error_lines(result)
    assert len(lines) == 1 and message in lines[0]


def test_debug_shows_the_traceback(photo: Path) -> None:
    from studio.errors import ConfigError

    with pytest.raises(ConfigError):
        runner.invoke(app, ["--debug", "restore", str(photo), "--color-fix", "sepia"], catch_exceptions=False)


def test_dry_run_prints_plan_and_sources_and_writes_nothing(tmp_path: Path, photo: Path) -> None:
    config = tmp_path / "studio.toml"
    config.write_text("[restore]\nscale = 3.0\nsteps = 40\n")
    result = studio("restore", photo, "--engine", "classical", "--config", config, "--steps", "30", "--dry-run")
    assert result.exit_code == 0, result.output
    assert '"output_size": [192, 144]' in " ".join(result.stdout.split()).replace("[ ", "[").replace(" ]", "]")
    assert f"scale = 3.0  (config:{config})" in result.stdout  # from the config file
    assert "steps = 30  (cli)" in result.stdout  # the flag beats the file
    assert list(photo.parent.glob("*_restored*")) == []


def test_user_config_layer_and_cli_precedence(tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.settings import resolve

    user = tmp_path / "user.toml"
    user.write_text("[restore]\nscale = 2.0\nguidance = 6.0\n")
    monkeypatch.setenv("STUDIO_CONFIG", str(user))
    settings = resolve({"guidance": 3.5})
    assert settings.scale == 2.0 and settings.source_of("scale").startswith("user:")
    assert settings.guidance == 3.5 and settings.source_of("guidance") == "cli"
    assert settings.steps == 25 and settings.source_of("steps") == "default"  # configs/defaults.toml sets nothing
    bad = tmp_path / "bad.toml"
    bad.write_text('[restore]\nsteps = "many"\n')
    result = studio("restore", photo, "--engine", "classical", "--config", bad)
    assert result.exit_code == 2 and "steps" in result.stderr and str(bad) in result.stderr


def test_restoring_an_output_again_warns(tmp_path: Path, photo: Path) -> None:
    first = tmp_path / "first.png"
    assert studio("restore", photo, "--engine", "classical", "--scale", "2", "-o", first).exit_code == 0
    result = studio("restore", first, "--engine", "classical", "--scale", "2", "-o", tmp_path / "second.png")
    assert result.exit_code == 0
    assert "already a studio output" in result.stderr


def test_jpeg_output_needs_quality_95(tmp_path: Path, photo: Path) -> None:
    result = studio("restore", photo, "--engine", "classical", "-o", tmp_path / "x.jpg", "--quality", "80")
    assert result.exit_code == 2 and "--force-jpeg" in result.stderr and not (tmp_path / "x.jpg").exists()
    result = studio("restore", photo, "--engine", "classical", "-o", tmp_path / "y.jpg")
    assert result.exit_code == 0 and "re-compresses" in result.stderr


def test_info_on_a_plain_image_says_so(photo: Path) -> None:
    result = studio("info", photo)
    assert result.exit_code == 1 and "no studio metadata" in result.stderr


def test_engines_lists_classical_as_available() -> None:
    result = studio("engines", "--json")
    rows = {row["engine"]: row for row in json.loads(result.stdout)}
    assert rows["classical"]["available"] is True
    assert {"classical", "fast", "sd-x4"} <= set(rows)


def test_help_is_fast_because_heavy_libraries_load_lazily() -> None:
    code = (
        "import sys; from studio.cli import app; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'spandrel', 'cv2', 'facexlib', 'skimage') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "studio", "restore", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--color-fix" in help_text.stdout
    assert "<bool>" not in help_text.stdout and "<float>" in help_text.stdout  # switches take no value


def test_python_api_matches_the_cli(tmp_path: Path, photo: Path) -> None:
    import studio as api

    report = api.restore([photo], tmp_path / "api.png", engine="classical", scale=2.0)
    assert report.succeeded == 1
    settings = api.load_settings(engine="classical", scale=2.0)
    assert settings.scale == 2.0 and settings.source_of("scale") == "cli"


def test_preset_fills_prompt_and_parameters_but_flags_win(photo: Path) -> None:
    result = studio(
        "restore",
        photo,
        "--engine",
        "fast",
        "--preset",
        "old-photo",
        "--prompt",
        "a bride in 1950",
        "--negative-prompt",
        "text",
        "--face-fidelity",
        "0.3",
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    assert "face_fidelity = 0.3  (cli)" in result.stdout  # the flag beats the preset's 0.7
    assert "color_fix = 'wavelet'  (preset:old-photo)" in result.stdout
    prompt_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("prompt ="))
    assert "a bride in 1950" in prompt_line and "(preset:old-photo)" in prompt_line
    negative_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("negative_prompt ="))
    assert negative_line.rstrip().endswith("text'  (preset:old-photo)")
    unknown = studio("restore", photo, "--engine", "classical", "--preset", "no-such-preset", "--dry-run")
    assert unknown.exit_code == 2 and "old-photo" in unknown.stderr  # lists what exists


def test_fast_engine_end_to_end_keeps_16_bit_and_alpha_and_records_the_weights_hash(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    """Real bundled Real-ESRGAN weights on a 16-bit RGBA input: depth, alpha and provenance survive."""
    import cv2

    from studio import weights

    rgb16 = astronaut[200:248, 180:228].astype(np.uint16) * 257
    alpha16 = np.full((48, 48), 65535, np.uint16)
    alpha16[:, :12] = 0  # a transparent strip
    source = tmp_path / "deep.png"
    cv2.imwrite(str(source), np.dstack([rgb16[..., ::-1], alpha16]))
    out = tmp_path / "deep_x2.png"
    result = studio("restore", source, "--engine", "fast", "--scale", "2", "-o", out)
    assert result.exit_code == 0, result.output
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (96, 96, 4)
    assert back[:, :20, 3].max() == 0 and back[:, 28:, 3].min() == 65535  # alpha kept, upscaled
    info = json.loads(studio("info", out, "--json").stdout)
    assert info["model"] == "realesrgan-x4plus"
    assert info["weights_sha256"] == weights.file_sha256(weights.resolve("realesrgan-x4plus", "sr"))


def test_fidelity_pulls_the_fast_result_toward_lanczos_monotonically(tmp_path: Path, photo: Path) -> None:
    """Real bundled Real-ESRGAN: higher --fidelity is closer to the classical upscale; 1 equals it."""
    lanczos = tmp_path / "lanczos.png"
    assert studio("restore", photo, "--engine", "classical", "--scale", "2", "-o", lanczos).exit_code == 0
    reference = np.asarray(Image.open(lanczos), dtype=np.float32)
    distances = []
    for fidelity in ("0", "0.5", "1"):
        out = tmp_path / f"f{fidelity}.png"
        result = studio("restore", photo, "--engine", "fast", "--scale", "2", "--fidelity", fidelity, "-o", out)
        assert result.exit_code == 0, result.output
        distances.append(np.abs(np.asarray(Image.open(out), dtype=np.float32) - reference).mean())
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 0.5  # fidelity 1 is the Lanczos upscale (up to rounding)
    assert distances[0] > 2.0  # the network really differs from Lanczos


def test_an_unexpected_error_fails_one_file_not_the_batch(
    tmp_path: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that hits one image (simulated: the classical engine raises for 40-px-high inputs)."""
    from studio.engines.classical import ClassicalEngine

    real_restore = ClassicalEngine.restore

    def flaky(self, image, scale, progress=None, **call):
        if image.shape[0] == 40:
            raise ValueError("simulated bug")
        return real_restore(self, image, scale, progress, **call)

    monkeypatch.setattr(ClassicalEngine, "restore", flaky)
    Image.fromarray(astronaut[:32, :32]).save(tmp_path / "a.png")
    Image.fromarray(astronaut[:40, :32]).save(tmp_path / "b.png")
    out = tmp_path / "out"
    result = studio("restore", tmp_path / "a.png", tmp_path / "b.png", "--engine", "classical", "-o", out)
    assert result.exit_code == 1
    assert (out / "a.png").exists() and not (out / "b.png").exists()
    assert "internal error (ValueError: simulated bug)" in result.stderr and "--debug" in result.stderr
    with pytest.raises(ValueError):
        runner.invoke(
            app,
            ["--debug", "restore", str(tmp_path / "b.png"), "--engine", "classical", "-o", str(tmp_path / "again.png")],
            catch_exceptions=False,
        )


def test_report_and_sidecar_never_land_on_inputs_or_foreign_files(tmp_path: Path, photo: Path) -> None:
    before = photo.read_bytes()
    out = tmp_path / "o.png"
    result = studio("restore", photo, "--engine", "classical", "-o", out, "--overwrite", "--report", photo)
    assert result.exit_code == 2 and "give a .json path" in result.stderr and photo.read_bytes() == before
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}')
    result = studio("restore", photo, "--engine", "classical", "-o", tmp_path / "o.png", "--report", notes)
    assert result.exit_code == 2 and notes.read_text() == '{"mine": true}'
    result = studio("restore", photo, "--engine", "classical", "-o", tmp_path / "o.png", "--report", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.stderr
    existing = tmp_path / "s.png.json"
    existing.write_text("keep")
    result = studio("restore", photo, "--engine", "classical", "-o", tmp_path / "s.png", "--sidecar")
    assert result.exit_code == 1 and existing.read_text() == "keep" and not (tmp_path / "s.png").exists()


def test_output_folder_by_trailing_slash_and_several_inputs_need_a_folder(tmp_path: Path, photo: Path) -> None:
    result = studio("restore", photo, "--engine", "classical", "--scale", "2", "-o", f"{tmp_path / 'new'}/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "photo.png").is_file()
    other = tmp_path / "other.png"
    Image.open(photo).save(other)
    result = studio("restore", photo, other, "--engine", "classical", "-o", tmp_path / "two.png")
    assert result.exit_code == 2 and "output folder" in result.stderr and not (tmp_path / "two.png").exists()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should go")
    result = studio("restore", photo, other, "--engine", "classical", "-o", blocker)
    assert result.exit_code == 1 and "a file of that name is in the way" in result.stderr
    assert "Traceback" not in result.output


def test_outputs_get_normal_file_permissions(tmp_path: Path, photo: Path) -> None:
    import os
    import stat

    out = tmp_path / "perm.png"
    assert studio("restore", photo, "--engine", "classical", "-o", out).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


def test_tiff_input_keeps_descriptive_exif_and_drops_its_layout_tags(tmp_path: Path, astronaut: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Nikon"
    source = tmp_path / "scan.tif"
    Image.fromarray(astronaut[:32, :32]).save(source, exif=exif.tobytes())
    for name in ("scan_out.tif", "scan_out.png"):
        out = tmp_path / name
        result = studio("restore", source, "--engine", "classical", "--scale", "2", "-o", out)
        assert result.exit_code == 0, result.output
        with Image.open(out) as written:
            assert written.size == (64, 64)
            tags = written.getexif() if name.endswith(".png") else {}
            if tags:
                assert tags.get(0x010F) == "Nikon" and 256 not in tags and 273 not in tags


def test_colour_fix_keeps_transparent_edges_clean(tmp_path: Path) -> None:
    size = 64
    y, x = np.mgrid[0:size, 0:size]
    disc = ((x - 32) ** 2 + (y - 32) ** 2 < 20**2).astype(np.uint8) * 255
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = disc, disc
    source = tmp_path / "disc.png"
    Image.fromarray(rgba, "RGBA").save(source)
    out = tmp_path / "disc_out.png"
    result = studio("restore", source, "--engine", "classical", "--color-fix", "wavelet", "-o", out)
    assert result.exit_code == 0, result.output
    back = np.asarray(Image.open(out), dtype=np.float32)
    edge = (back[..., 3] > 25) & (back[..., 3] < 230)
    assert edge.sum() > 50 and back[..., 0][edge].min() > 240
    assert "departs strongly" not in result.stderr


def test_big_camera_exif_and_a_long_prompt_still_write_jpeg(tmp_path: Path, astronaut: np.ndarray) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x927C] = b"M" * 60_000  # a camera MakerNote
    source = tmp_path / "camera.jpg"
    Image.fromarray(astronaut[:48, :48]).save(source, exif=exif.tobytes(), quality=95)
    out = tmp_path / "camera_out.jpg"
    result = studio("restore", source, "--engine", "classical", "-o", out, "--prompt", "a very long prompt " * 80)
    assert result.exit_code == 0, result.output
    assert json.loads(studio("info", out, "--json").stdout)["engine"] == "classical"


def test_flags_that_the_engine_ignores_are_said_and_var_needs_a_preset(photo: Path) -> None:
    result = studio("restore", photo, "--engine", "classical", "--steps", "50", "--prompt", "a cat", "--dry-run")
    assert result.exit_code == 0 and "--prompt, --steps only steer diffusion engines" in result.stderr
    result = studio("restore", photo, "--engine", "classical", "--var", "era=1950s", "--dry-run")
    assert result.exit_code == 2 and "--preset" in result.stderr
    for flag, value in (("--tile-overlap", "-5"), ("--guidance", "-3"), ("--seed", "-1")):
        assert studio("restore", photo, "--engine", "classical", flag, value, "--dry-run").exit_code == 2


def test_strength_flag_beats_a_presets_noise_level() -> None:
    from studio.engines.sd_x4.engine import SDx4Engine, noise_level_for_strength
    from studio.runner import prepare_settings

    settings, _ = prepare_settings({"engine": "sd-x4", "preset": "old-photo", "strength": 0.9, "model": "a/b"})
    assert SDx4Engine(settings).noise_level() == (noise_level_for_strength(0.9), "strength 0.9")
    settings, _ = prepare_settings({"engine": "sd-x4", "preset": "old-photo", "model": "a/b"})
    assert SDx4Engine(settings).noise_level() == (40, "noise_level")  # the preset's value


def test_hidden_folders_are_skipped_and_boolean_flags_can_be_turned_off(tmp_path: Path, astronaut: np.ndarray) -> None:
    shots = tmp_path / "shots"
    (shots / ".thumbs").mkdir(parents=True)
    Image.fromarray(astronaut[:32, :32]).save(shots / "a.png")
    Image.fromarray(astronaut[:32, :32]).save(shots / ".thumbs" / "a.png")
    config = tmp_path / "c.toml"
    config.write_text("[restore]\nsidecar = true\n")
    out = tmp_path / "out"
    result = studio("restore", shots, "--engine", "classical", "-o", out, "--config", config, "--no-sidecar")
    assert result.exit_code == 0, result.output
    assert (out / "a.png").exists() and not (out / ".thumbs").exists()
    assert not (out / "a.png.json").exists()  # --no-sidecar beat the config file


def test_a_folder_without_o_goes_to_a_restored_sibling_with_its_report(tmp_path: Path, astronaut: np.ndarray) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(astronaut[:32, :32]).save(scans / name)
    result = studio("restore", scans, "--engine", "classical", "--scale", "2")
    assert result.exit_code == 0, result.output
    root = tmp_path / "scans_restored"
    assert (root / "a.png").exists() and (root / "b.png").exists()
    assert json.loads((root / "studio_report.json").read_text())["summary"]["succeeded"] == 2
