"""Listings a person can read when piped or in a narrow window: one record per block, never a word, a number
or a hash split across lines or shortened with "..."; a table only on a terminal wide enough for it.
Also: `--engine`'s help names every engine of the registry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from studio import weights
from studio.cli import app
from studio.engines import engine_names
from studio.io import read_image, write_image

NARROW = {"COLUMNS": "40"}


def test_weights_list_piped_is_one_block_per_model_with_whole_values() -> None:
    result = CliRunner().invoke(app, ["weights", "list"], env=NARROW)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for spec in weights.registry():
        assert spec.name in lines  # the record's name on a line of its own
        assert f"  licence:   {spec.license}" in lines
        assert f"  good for:  {spec.good_for}" in lines
    assert "…" not in result.output and "..." not in result.output


def test_a_wide_terminal_gets_a_table() -> None:
    result = CliRunner().invoke(app, ["presets", "list"], env={"COLUMNS": "400", "TTY_COMPATIBLE": "1"})
    assert result.exit_code == 0, result.output
    assert "┃" in result.output or "│" in result.output


def test_info_shows_every_hash_whole(tmp_path: Path) -> None:
    hashes = ["0123456789abcdef" * 4, "fedcba9876543210" * 4]
    picture = read_image(_photo(tmp_path), 10**8)
    provenance = {"studio_version": "0", "engine": "fast", "weights_sha256": hashes, "command": "studio restore x.png"}
    write_image(tmp_path / "out.png", picture, "png", 95, provenance)
    result = CliRunner().invoke(app, ["info", str(tmp_path / "out.png")], env=NARROW)
    assert result.exit_code == 0, result.output
    assert all(any(line.endswith(h) for line in result.output.splitlines()) for h in hashes), result.output


def test_evaluate_never_splits_numbers_or_run_names(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    for side, folder in ((64, "hq"), (32, "lq")):
        (pairs / folder).mkdir(parents=True)
        pixels = np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((side, side)).save(pairs / folder / "a.png")
    runs = ["engine=classical", "engine=classical,model=bicubic"]
    result = CliRunner().invoke(app, ["evaluate", str(pairs), *[a for r in runs for a in ("--run", r)]], env=NARROW)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(run in lines for run in runs), result.output
    cells = [line.split(":", 1)[1].strip() for line in lines if line.startswith("  PSNR-Y dB")]
    assert len(cells) == 2 and all(re.fullmatch(r"\d+\.\d\d \(\d+\.\d\d\)", cell) for cell in cells), cells


def test_engine_help_lists_the_registry() -> None:
    result = CliRunner().invoke(app, ["restore", "--help"], env={"COLUMNS": "200"})
    flat = " ".join(result.output.replace("│", " ").split())
    start = flat.index("--engine -e")
    engine_help = flat[start : flat.index("--model", start)]
    assert all(name in engine_help for name in engine_names()) and "supir" in engine_help


def _photo(folder: Path) -> Path:
    path = folder / "in.png"
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(path)
    return path
