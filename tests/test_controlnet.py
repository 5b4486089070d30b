"""ControlNet through the shared recipe vs diffusers' StableDiffusionControlNetPipeline, on toy-width random
SD 1.x components with random (not zero) ControlNet outputs: same seed and settings, same pixels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.engines.diffusion.offload import Placement
from studio.engines.diffusion.random_model import build_sd_components
from studio.engines.diffusion.recipe import Components, Recipe, Request


@pytest.fixture(scope="module")
def components() -> Components:
    return build_sd_components(controlnets=2)


def control_image(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.kron(rng.random((size // 8, size // 8, 3), dtype=np.float32), np.ones((8, 8, 1), np.float32))


def run_recipe(components: Components, nets: int, **values: object) -> np.ndarray:
    chosen = Components(components.vae, components.text_encoder, components.tokenizer, components.unet,
                        components.scheduler, controlnets=components.controlnets[:nets])
    recipe = Recipe(chosen, Placement("none", torch.device("cpu")), torch.float32)
    settings = {"prompt": "a cat", "negative_prompt": "blur", "steps": 3, "guidance": 5.0, "seed": 11, **values}
    return recipe(control_image(), Request(**settings))


def run_diffusers(components: Components, nets: int, scales: list[float]) -> np.ndarray:
    from diffusers import StableDiffusionControlNetPipeline

    controlnets = components.controlnets[:nets]
    pipe = StableDiffusionControlNetPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, controlnet=controlnets if nets > 1 else controlnets[0],
        scheduler=type(components.scheduler).from_config(components.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    image = torch.from_numpy(control_image().transpose(2, 0, 1).copy())[None]
    return pipe(prompt="a cat", negative_prompt="blur", image=[image] * nets if nets > 1 else image, height=64,
                width=64, num_inference_steps=3, guidance_scale=5.0, controlnet_conditioning_scale=scales
                if nets > 1 else scales[0], generator=torch.Generator("cpu").manual_seed(11),
                output_type="np").images[0]


def test_one_controlnet_matches_diffusers_pipeline(components: Components) -> None:
    ours = run_recipe(components, 1, control_scales=(0.8,))
    theirs = run_diffusers(components, 1, [0.8])
    assert ours.shape == theirs.shape == (64, 64, 3)
    assert np.abs(ours - theirs).max() == 0.0


def test_two_controlnets_match_diffusers_multicontrolnet(components: Components) -> None:
    ours = run_recipe(components, 2, control_scales=(0.7, 1.3))
    theirs = run_diffusers(components, 2, [0.7, 1.3])
    assert np.abs(ours - theirs).max() == 0.0


def test_scale_per_step_zero_is_the_plain_unet_and_nonzero_steers(components: Components) -> None:
    plain = run_recipe(components, 0)
    off = run_recipe(components, 1, control_scales=(lambda t: 0.0,))
    on = run_recipe(components, 1, control_scales=(lambda t: 1.0,))
    late = run_recipe(components, 1, control_scales=(lambda t: 1.0 if int(t) < 500 else 0.0,))
    assert np.abs(off - plain).max() < 1e-6
    assert np.abs(on - plain).mean() > 1e-3
    assert 0 < np.abs(late - on).mean() and 0 < np.abs(late - plain).mean()


def test_wrong_number_of_scales_is_a_usage_error(components: Components) -> None:
    from studio.errors import UsageError

    with pytest.raises(UsageError, match="one per ControlNet"):
        run_recipe(components, 2, control_scales=(1.0,))
