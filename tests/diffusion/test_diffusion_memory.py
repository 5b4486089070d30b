"""Out of memory inside the sd-x4 engine (bug 3): retry with smaller tiles, then fall back with a note.

The tiny random UNet is made to run out of memory above a latent size by wrapping its forward, the
way a GPU fails on a tile too large for it; everything else is the real engine and runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.cli import app
from studio.diffusion.memory import MIN_TILE, tile_ladder
from studio.engines.sd_x4.engine import SDx4Engine
from studio.errors import OutOfMemory
from studio.settings import Settings


@pytest.fixture
def tiny_folder(tiny_sd_x4_folder: str) -> str:
    return tiny_sd_x4_folder


@pytest.fixture
def unet_memory_limit(monkeypatch: pytest.MonkeyPatch):
    """Set `limit[0]`: UNet calls on latents wider than it raise torch's out-of-memory error."""
    from diffusers import UNet2DConditionModel

    limit = [10**6]
    original = UNet2DConditionModel.forward

    def forward(self, sample, *args, **kwargs):
        if max(sample.shape[-2:]) > limit[0]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, sample, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", forward)
    return limit


def image(size: int = 48) -> np.ndarray:
    return np.random.default_rng(0).random((size, size, 3), dtype=np.float32)


def test_tile_ladder_halves_both_tiles_down_to_the_minimum() -> None:
    assert tile_ladder(0, 0, 40, 100) == [(0, 0), (50, 50), (25, 25), (16, 16)]
    assert tile_ladder(64, 32, 200, 200) == [(64, 32), (32, 16), (16, 16)]
    assert tile_ladder(0, 0, MIN_TILE, 8) == [(0, 0)]


def test_out_of_memory_retries_with_smaller_tiles_and_says_so(tiny_folder: str, unet_memory_limit) -> None:
    expected = (
        SDx4Engine(Settings(model=tiny_folder, steps=2, seed=5, tile=24, tile_overlap=12)).restore(image(), 4).image
    )
    unet_memory_limit[0] = 24
    engine = SDx4Engine(Settings(model=tiny_folder, steps=2, seed=5, tile=0, tile_overlap=12))
    result = engine.restore(image(), 4)
    out = result.image
    details = result.provenance
    assert details["tile"] == 24 and details["vae_tile"] == 24
    assert len(details["memory_retries"]) == 1 and "out of memory" in details["memory_retries"][0]
    np.testing.assert_array_equal(out, expected)  # the retry is the same computation as asking for those tiles


def test_out_of_memory_at_the_smallest_tile_is_a_studio_error_and_other_errors_pass(
    tiny_folder: str, unet_memory_limit
) -> None:
    unet_memory_limit[0] = 8
    with pytest.raises(OutOfMemory, match="even with 16 px latent tiles"):
        SDx4Engine(Settings(model=tiny_folder, steps=1, seed=5, tile=0)).restore(image(), 4)


def test_cli_falls_back_after_out_of_memory_and_the_notes_say_so(
    tmp_path: Path, photo: Path, tiny_folder: str, unet_memory_limit
) -> None:
    unet_memory_limit[0] = 8
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "restore",
            str(photo),
            "--engine",
            "sd-x4",
            "--model",
            tiny_folder,
            "--steps",
            "1",
            "--fallback",
            "classical",
            "-o",
            str(tmp_path / "out.png"),
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(report.read_text())["files"][0]
    assert entry["engine"] == "classical"
    assert any("out of memory" in note and "falling back" in note for note in entry["notes"])
