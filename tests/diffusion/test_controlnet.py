"""ControlNet through the shared recipe vs diffusers' StableDiffusionControlNetPipeline, on toy-width random
SD 1.x components with random (not zero) ControlNet outputs: same seed and settings, same pixels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.diffusion.offload import Placement
from studio.diffusion.recipe import Components, Recipe, Request
from studio.testing.tiny_sd import build_sd_components


@pytest.fixture(scope="module")
def components() -> Components:
    return build_sd_components(controlnets=2)


def control_image(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.kron(rng.random((size // 8, size // 8, 3), dtype=np.float32), np.ones((8, 8, 1), np.float32))


def run_recipe(components: Components, nets: int, **values: object) -> np.ndarray:
    chosen = Components(
        components.vae,
        components.text_encoder,
        components.tokenizer,
        components.unet,
        components.scheduler,
        controlnets=components.controlnets[:nets],
    )
    recipe = Recipe(chosen, Placement("none", torch.device("cpu")), torch.float32)
    settings = {"prompt": "a cat", "negative_prompt": "blur", "steps": 3, "guidance": 5.0, "seed": 11, **values}
    return recipe(control_image(), Request(**settings))


def run_diffusers(components: Components, nets: int, scales: list[float]) -> np.ndarray:
    from diffusers import StableDiffusionControlNetPipeline

    controlnets = components.controlnets[:nets]
    pipe = StableDiffusionControlNetPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        controlnet=controlnets if nets > 1 else controlnets[0],
        scheduler=type(components.scheduler).from_config(components.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    image = torch.from_numpy(control_image().transpose(2, 0, 1).copy())[None]
    return pipe(
        prompt="a cat",
        negative_prompt="blur",
        image=[image] * nets if nets > 1 else image,
        height=64,
        width=64,
        num_inference_steps=3,
        guidance_scale=5.0,
        controlnet_conditioning_scale=scales if nets > 1 else scales[0],
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="np",
    ).images[0]


def test_one_controlnet_matches_diffusers_pipeline(components: Components) -> None:
    ours = run_recipe(components, 1, control_scales=(0.8,))
    theirs = run_diffusers(components, 1, [0.8])
    assert ours.shape == theirs.shape == (64, 64, 3)
    assert np.abs(ours - theirs).max() == 0.0


def test_two_controlnets_match_diffusers_multicontrolnet(components: Components) -> None:
    ours = run_recipe(components, 2, control_scales=(0.7, 1.3))
    theirs = run_diffusers(components, 2, [0.7, 1.3])
    assert np.abs(ours - theirs).max() == 0.0


def test_img2img_strength_matches_diffusers_controlnet_img2img_pipeline(components: Components) -> None:
    """strength < 1: the image's VAE latents noised to the first remaining timestep, then the later steps."""
    from diffusers import StableDiffusionControlNetImg2ImgPipeline

    ours = run_recipe(components, 1, steps=4, strength=0.5, control_scales=(0.9,))
    pipe = StableDiffusionControlNetImg2ImgPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        controlnet=components.controlnets[0],
        scheduler=type(components.scheduler).from_config(components.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    image = torch.from_numpy(control_image().transpose(2, 0, 1).copy())[None]
    theirs = pipe(
        prompt="a cat",
        negative_prompt="blur",
        image=image * 2 - 1,
        control_image=image,
        height=64,
        width=64,
        strength=0.5,
        num_inference_steps=4,
        guidance_scale=5.0,
        controlnet_conditioning_scale=0.9,
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="np",
    ).images[0]
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


def test_sdxl_controlnet_gets_pooled_text_and_time_ids_by_name() -> None:
    """A toy-width SDXL UNet (text_time added conditions) with a ControlNet copied from it: the named
    `text_embeds`/`time_ids` reach both (changing them changes the output; without them SDXL cannot run)."""
    from diffusers import UNet2DConditionModel

    from studio.diffusion.conditioning import Conditioning
    from studio.diffusion.controlnet import controlled_unet
    from studio.diffusion.recipe import plain_unet
    from studio.testing.tiny_sd import tiny_controlnet

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
        cross_attention_dim=64,
        norm_num_groups=8,
    ).eval()
    controlnet = tiny_controlnet(unet, seed=1)
    cond = Conditioning(
        {
            "encoder_hidden_states": torch.randn(1, 7, 64),
            "text_embeds": torch.randn(1, 32),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
            "control_0": torch.rand(1, 3, 64, 64),
        },
        {"control_0": 8},
    )
    x, t = torch.randn(1, 4, 8, 8), torch.tensor(500)
    with torch.no_grad():
        steered = controlled_unet(unet, [controlnet], [1.0])(x, t, cond, None)
        off = controlled_unet(unet, [controlnet], [0.0])(x, t, cond, None)
        other_size = cond.with_tensors({"time_ids": torch.tensor([[32.0, 32.0, 0.0, 0.0, 64.0, 64.0]])})
        resized = controlled_unet(unet, [controlnet], [1.0])(x, t, other_size, None)
        plain = plain_unet(unet)(x, t, cond, None)
    torch.testing.assert_close(off, plain)
    assert (steered - plain).abs().mean() > 1e-4 and (resized - steered).abs().mean() > 1e-4
