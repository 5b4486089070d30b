"""The sd-x4 engine on tiny random-weight components saved as a real diffusers folder (no network):
sizes, seeds, parity with diffusers' own StableDiffusionUpscalePipeline, tiling, knobs and errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.diffusion import loading
from studio.diffusion.samplers.schedulers import make_scheduler
from studio.engines.base import output_size
from studio.engines.sd_x4.engine import SDx4Engine, noise_level_for_strength
from studio.errors import InputError, UsageError, WeightsMissing
from studio.runner.plan import finalize_seed
from studio.settings import Settings, apply_layer


@pytest.fixture
def tiny_folder(tiny_sd_x4_folder: str) -> str:
    return tiny_sd_x4_folder


def blocky_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = rng.random((height // 8 + 1, width // 8 + 1, 3), dtype=np.float32)
    return np.kron(cells, np.ones((8, 8, 1), dtype=np.float32))[:height, :width]


def engine(folder: str, **values: object) -> SDx4Engine:
    settings = Settings(model=folder, steps=2, seed=7, tile=0)
    return SDx4Engine(apply_layer(settings, values, "cli") if values else settings)


def test_tiny_model_outputs_4x_and_exact_size_for_other_scales(tiny_folder: str) -> None:
    image = blocky_image(13, 20)  # not a multiple of 8: padded inside, cropped back
    eng = engine(tiny_folder)
    out = eng.restore(image, 4).image
    assert out.shape == (52, 80, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert eng.restore(image, 2).image.shape == (*output_size(13, 20, 2), 3)
    assert eng.restore(image, 2.5).image.shape == (*output_size(13, 20, 2.5), 3)


def test_tiny_model_seed_reproduces_and_random_seed_is_reported(tiny_folder: str) -> None:
    image = blocky_image(16, 16)
    first = engine(tiny_folder).restore(image, 4).image
    assert np.array_equal(first, engine(tiny_folder).restore(image, 4).image)
    assert np.abs(first - engine(tiny_folder, seed=8).restore(image, 4).image).mean() > 1e-3
    unseeded = SDx4Engine(finalize_seed(Settings(model=tiny_folder, steps=2, tile=0)))  # as the runner plans it
    result = unseeded.restore(image, 4)
    drawn = result.image
    seed = result.provenance["seed"]
    assert np.array_equal(drawn, engine(tiny_folder, seed=seed).restore(image, 4).image)


@pytest.mark.parametrize(("scheduler", "guidance"), [(None, 4.0), ("euler-a", 4.0), ("dpm++", 1.0), ("ddpm", 7.5)])
def test_tiny_model_matches_diffusers_pipeline_with_tiling_off(
    tiny_folder: str, scheduler: str | None, guidance: float
) -> None:
    from diffusers import StableDiffusionUpscalePipeline

    image = blocky_image(16, 24)
    eng = engine(
        tiny_folder,
        scheduler=scheduler,
        guidance=guidance,
        prompt="a cat",
        negative_prompt="blur",
        noise_level=30,
        steps=3,
    )
    ours = eng.restore(image, 4).image
    pipe = StableDiffusionUpscalePipeline.from_pretrained(tiny_folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler)
    theirs = pipe(
        prompt="a cat",
        negative_prompt="blur",
        image=image[None],
        num_inference_steps=3,
        guidance_scale=guidance,
        noise_level=30,
        generator=torch.Generator("cpu").manual_seed(7),
        output_type="np",
    ).images[0]
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() == 0.0  # identical, not merely close


def test_tiny_model_tiled_is_close_to_untiled(tiny_folder: str) -> None:
    """Tiling changes the result far less than another seed does (GroupNorm/attention are not local)."""
    image = blocky_image(48, 48)
    untiled = engine(tiny_folder).restore(image, 4).image
    other_seed = engine(tiny_folder, seed=8).restore(image, 4).image
    tiled_eng = engine(tiny_folder, tile=32, tile_overlap=16)
    tiled_result = tiled_eng.restore(image, 4)
    tiled = tiled_result.image
    assert tiled_result.provenance["tile"] == 32 and tiled_result.provenance["vae_tile"] == 32
    assert tiled.shape == untiled.shape
    assert np.abs(tiled - untiled).mean() < 0.1 * np.abs(other_seed - untiled).mean()
    whole = engine(tiny_folder, tile=64).restore(image, 4).image  # one tile covers it: exactly untiled
    np.testing.assert_allclose(whole, untiled, atol=1e-6)


def test_progress_is_reported_per_step_then_decode(tiny_folder: str) -> None:
    calls: list[tuple[int, int]] = []
    engine(tiny_folder, steps=3).restore(blocky_image(16, 16), 4, lambda done, total: calls.append((done, total))).image
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_strength_maps_to_noise_level_unless_noise_level_given(tiny_folder: str) -> None:
    assert [noise_level_for_strength(s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)] == [0, 10, 20, 50, 350]
    levels = [noise_level_for_strength(s / 20) for s in range(21)]
    assert levels == sorted(levels)
    assert SDx4Engine(apply_layer(Settings(model=tiny_folder), {"strength": 0.75}, "cli")).noise_level()[0] == 50
    given = apply_layer(Settings(model=tiny_folder), {"strength": 0.75, "noise_level": 5}, "cli")
    assert SDx4Engine(given).noise_level() == (5, "noise_level")


def test_noise_level_moves_output_away_from_zero_noise_result(tiny_folder: str) -> None:
    image = blocky_image(16, 16)
    base = engine(tiny_folder, noise_level=0).restore(image, 4).image
    near = np.abs(engine(tiny_folder, noise_level=20).restore(image, 4).image - base).mean()
    far = np.abs(engine(tiny_folder, noise_level=350).restore(image, 4).image - base).mean()
    assert far > near > 0


def test_unknown_scheduler_is_a_usage_error_listing_names(tiny_folder: str) -> None:
    with pytest.raises(UsageError, match="euler-a"):
        engine(tiny_folder, scheduler="warp-drive")


def test_bad_images_are_input_errors(tiny_folder: str) -> None:
    eng = engine(tiny_folder)
    with pytest.raises(InputError, match="at least 8"):
        eng.restore(np.zeros((4, 16, 3), np.float32), 4).image
    bad = blocky_image(16, 16)
    bad[3, 3, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        eng.restore(bad, 4).image


def test_missing_folder_and_uncached_hub_id_raise_weights_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(WeightsMissing, match="--model"):
        SDx4Engine(Settings(model=missing))
    not_diffusers = tmp_path / "empty"
    not_diffusers.mkdir()
    assert not SDx4Engine.availability(Settings(model=str(not_diffusers))).ok
    with pytest.raises(WeightsMissing, match="model_index.json"):
        SDx4Engine(Settings(model=str(not_diffusers))).restore(blocky_image(16, 16), 4).image
    hub = Settings(model="studio-tests/never-published-upscaler")
    availability = SDx4Engine.availability(hub)
    assert not availability.ok and "studio weights pull sd-x4" in availability.reason
    with pytest.raises(WeightsMissing, match="studio weights pull sd-x4"):
        SDx4Engine(hub).restore(blocky_image(16, 16), 4).image


def test_model_argument_forms(tiny_folder: str, tmp_path) -> None:
    assert loading.resolve_source(tiny_folder).kind == "folder"
    assert loading.resolve_source(str(tmp_path / "x4.safetensors")).kind == "file"
    pinned = loading.resolve_source("stabilityai/stable-diffusion-x4-upscaler@abc123")
    assert (pinned.kind, pinned.ref, pinned.revision) == ("hub", "stabilityai/stable-diffusion-x4-upscaler", "abc123")
    assert SDx4Engine.availability(Settings(model=tiny_folder)).ok


def test_plan_estimates_without_loading_and_tiles_large_inputs(tiny_folder: str) -> None:
    eng = SDx4Engine(Settings(model=tiny_folder))
    small, large = eng.plan(64, 64, 4), eng.plan(2048, 2048, 4)
    assert eng._pipeline is None
    assert small["output_size"] == [256, 256] and small["noise_level"] == 20
    assert large["tile"] > 0 and large["vae_tile"] > 0
    assert large["estimated_seconds"] > small["estimated_seconds"]
