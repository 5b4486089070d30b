"""The flags shared by the adapter-guided diffusion engines (stablesr, supir): parsed, validated, recorded."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from studio.cli import app

runner = CliRunner()


def studio(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_adapter_flags_reach_the_settings_with_their_source(photo: Path) -> None:
    result = studio(
        "restore",
        photo,
        "--engine",
        "classical",
        "--adapter",
        "some/controlnet",
        "--adapter-scale",
        "0.8",
        "--denoise",
        "0.6",
        "--pull",
        "0.2",
        "--cfw",
        "0.5",
        "--stage1",
        "lanczos",
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    for line in (
        "adapter = 'some/controlnet'  (cli)",
        "adapter_scale = 0.8  (cli)",
        "denoise = 0.6  (cli)",
        "pull = 0.2  (cli)",
        "cfw = 0.5  (cli)",
        "stage1 = 'lanczos'  (cli)",
    ):
        assert line in result.stdout
    assert (
        "--adapter, --adapter-scale, --denoise, --pull, --cfw, --stage1 only steer diffusion engines" in result.stderr
    )


def test_adapter_flags_out_of_range_are_one_line_usage_errors(photo: Path) -> None:
    for flag, value in (
        ("--denoise", "1.5"),
        ("--pull", "-0.1"),
        ("--cfw", "2"),
        ("--adapter-scale", "3"),
        ("--stage1", "bicubic"),
    ):
        result = studio("restore", photo, "--engine", "classical", flag, value, "--dry-run")
        assert result.exit_code == 2, (flag, result.output)
        assert flag in result.stderr and "Traceback" not in result.output


def test_stablesr_composites_name_their_parts_and_pull_says_what_is_missing() -> None:
    from studio import weights

    assert weights.composite_members(weights.get("stablesr-512")) == ["stablesr-000117", "stablesr-cfw"]  # holds SD 2.1
    assert weights.composite_members(weights.get("stablesr-tile-sd15")) == ["sd-1.5", "controlnet-tile-sd15"]
    assert "non-commercial" in weights.get("stablesr-cfw").license
    assert all(check.name != "stablesr-512" for check in weights.verify())  # its parts have their own lines
    result = studio("weights", "pull", "stablesr-tile-sd15")  # offline: the first part cannot come
    assert result.exit_code == 3 and "stable-diffusion-v1-5" in result.output and "Traceback" not in result.output
