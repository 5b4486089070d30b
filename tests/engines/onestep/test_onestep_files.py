"""OSEDiff weights files as users meet them, through `studio restore --engine onestep`: a good tiny file runs and
records what made it; a truncated, foreign, renamed-key or code-carrying file stops with the same one line and
exit code in --dry-run and in the real run (random toy weights; no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from typer.testing import CliRunner

from studio.cli import app


class Payload:
    """Any class: unpickling it needs code, which a weights-only reader refuses."""


def restore(photo: Path, base: Path, adapter: Path, out: Path, *extra: str) -> object:
    args = [
        "restore",
        str(photo),
        "--engine",
        "onestep",
        "--model",
        str(base),
        "--adapter",
        str(adapter),
        "--scale",
        "0.5",
        "--seed",
        "7",
        "-o",
        str(out),
        "--overwrite",
        *extra,
    ]
    return CliRunner().invoke(app, args, catch_exceptions=False)


@pytest.mark.slow
def test_cli_restores_with_a_tiny_base_and_adapter(
    osediff_files: tuple[Path, Path], photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.png"
    result = restore(photo, *osediff_files, out, "--fidelity", "0.3", "--prompt", "a man", "--preset", "old-photo")
    assert result.exit_code == 0, result.output
    details = json.loads(CliRunner().invoke(app, ["info", str(out), "--json"]).stdout)["engine_details"]
    assert (
        details["method"] == "osediff" and details["pull"] == 0.3 and details["resolved_from"]["pull"] == "fidelity 0.3"
    )
    assert details["prompt_source"] == "--prompt/preset" and len(details["weights_sha256"]) == 64
    assert details["prompt"].startswith("a man, restored old photograph") and details["lora_fused"]


def damaged_files(adapter: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what its one line must say)."""
    data = torch.load(adapter, weights_only=True)
    files: dict[str, tuple[Path, str]] = {}
    truncated = folder / "truncated.pkl"
    truncated.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])
    files["truncated"] = (truncated, "cannot read")
    foreign = folder / "foreign.pt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2)}}, foreign)
    files["foreign"] = (foreign, "not a weights file of osediff")
    renamed = folder / "renamed.pkl"
    key = next(k for k in data["state_dict_unet"] if "lora_A" in k)
    data["state_dict_unet"][key.replace("lora_A", "lora_a")] = data["state_dict_unet"].pop(key)
    torch.save(data, renamed)
    files["renamed"] = (renamed, f"no UNet weight for '{key}'")
    code = folder / "code.pkl"
    torch.save({**data, "extra": Payload()}, code)
    files["code"] = (code, "refused: unpickling it would run code")
    return files


@pytest.mark.parametrize("kind", ["truncated", "foreign", "renamed", "code"])
def test_a_damaged_file_stops_alike_in_dry_run_and_run(
    osediff_files: tuple[Path, Path], photo: Path, tmp_path: Path, kind: str
) -> None:
    file, says = damaged_files(osediff_files[1], tmp_path)[kind]
    dry = restore(photo, osediff_files[0], file, tmp_path / "dry.png", "--dry-run")
    real = restore(photo, osediff_files[0], file, tmp_path / "real.png")
    assert dry.exit_code == real.exit_code == 2, (dry.output, real.output)
    assert says in dry.stderr and dry.stderr.strip().splitlines()[-1] == real.stderr.strip().splitlines()[-1]
    assert "Traceback" not in dry.output + real.output and not (tmp_path / "real.png").exists()
