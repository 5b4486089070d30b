"""The onestep engine (OSEDiff) on tiny random components saved as users' files: wiring checked against an
independent computation, fused = unfused, bf16 on the CPU, sizes, tiling, the pull knob (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.engines.onestep.engine import OneStepEngine, pull_knob
from studio.ops.resize import resize
from studio.settings import Settings, apply_layer


def engine(files: tuple[Path, Path], **values: object) -> OneStepEngine:
    base = {"engine": "onestep", "model": str(files[0]), "adapter": str(files[1]), "seed": 3, "tile": 0}
    return OneStepEngine(apply_layer(Settings(), {**base, **values}, "cli"))


def image(size: tuple[int, int] = (16, 24), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((*size, 3), dtype=np.float32)


def by_hand(files: tuple[Path, Path], stage1: np.ndarray, prompt: str, seed: int) -> np.ndarray:
    """The OSEDiff forward written out with diffusers + PEFT as the authors' test class does it: adapters
    from the file's lists, parameters copied by name, posterior sample, one UNet call at 999, x0, decode."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    base, weights = files
    data = torch.load(weights, weights_only=True)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    names = ("default_encoder", "default_decoder", "default_others")
    for name, part in zip(names, ("encoder", "decoder", "others"), strict=True):
        unet.add_adapter(LoraConfig(r=data["rank_unet"], target_modules=data[f"unet_lora_{part}_modules"]), name)
    vae.add_adapter(LoraConfig(r=data["rank_vae"], target_modules=data["vae_lora_encoder_modules"]), "default_encoder")
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora" in n or "conv_in" in n:
                p.copy_(data["state_dict_unet"][n])
        for n, p in vae.named_parameters():
            if "lora" in n:
                p.copy_(data["state_dict_vae"][n])
        unet.set_adapter(list(names))
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
        encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder")
        ids = tokenizer(
            prompt, max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids
        embeds = encoder(ids)[0]
        lq = torch.from_numpy(stage1).permute(2, 0, 1)[None] * 2 - 1
        z = vae.encode(lq).latent_dist.sample(torch.Generator().manual_seed(seed)) * vae.config.scaling_factor
        eps = unet(z, torch.tensor([999]), encoder_hidden_states=embeds).sample
        abar = DDPMScheduler.from_pretrained(base, subfolder="scheduler").alphas_cumprod[999]
        x0 = (z - (1 - abar).sqrt() * eps) / abar.sqrt()
        out = vae.decode(x0 / vae.config.scaling_factor).sample.clamp(-1, 1)
    return (out[0].permute(1, 2, 0).numpy() + 1) / 2


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`")
def test_output_equals_the_forward_written_out_by_hand(osediff_files: tuple[Path, Path]) -> None:
    low = image()
    result = engine(osediff_files, prompt="a cat").restore(low, 2.0)
    expected = by_hand(osediff_files, resize(low, 32, 48, "bicubic"), "a cat", 3)
    assert result.image.shape == (32, 48, 3)
    assert np.abs(result.image - expected).max() <= 1e-5
    assert result.provenance["lora_scale"] == 2.0 and result.provenance["unet_evaluations_per_window"] == 1


@pytest.mark.slow
def test_fused_lora_gives_the_unfused_output(osediff_files: tuple[Path, Path]) -> None:
    low = image()
    plain = engine(osediff_files, fuse_lora=False).restore(low, 2.0)
    fused = engine(osediff_files).restore(low, 2.0)  # the default
    assert fused.provenance["lora_fused"] and not plain.provenance["lora_fused"]
    assert np.abs(plain.image - fused.image).max() <= 1e-5


@pytest.mark.slow
def test_bf16_on_the_cpu_runs_and_stays_near_fp32(osediff_files: tuple[Path, Path]) -> None:
    low = image()
    full = engine(osediff_files).restore(low, 2.0).image
    half = engine(osediff_files, dtype="bf16").restore(low, 2.0)
    assert half.provenance["dtype"] == "bfloat16" and np.isfinite(half.image).all()
    assert np.abs(half.image - full).mean() < 0.05


@pytest.mark.slow
def test_odd_sizes_pad_and_crop_back_and_tiles_agree_with_one_pass(osediff_files: tuple[Path, Path]) -> None:
    odd = engine(osediff_files).restore(image((13, 21)), 1.5)
    assert odd.image.shape == (20, 32, 3)
    big = image((24, 24), seed=2)
    whole = engine(osediff_files).restore(big, 6.0).image  # 144 px: an 18-cell latent
    tiled = engine(osediff_files, tile=64, tile_overlap=32).restore(big, 6.0)
    assert tiled.provenance["tile"] == 64 and tiled.image.shape == whole.shape and np.isfinite(tiled.image).all()
    covering = engine(osediff_files, tile=256).restore(big, 6.0)  # one window holds the whole latent
    assert covering.provenance["tile"] == 0 and np.array_equal(covering.image, whole)


def test_pull_resolves_from_raw_flag_fidelity_then_strength() -> None:
    def knob(**values: object) -> tuple[float, str]:
        return pull_knob(apply_layer(Settings(), {"engine": "onestep", **values}, "cli"))

    assert knob() == (0.0, "default")
    assert knob(strength=0.25) == (0.75, "strength 0.25")
    assert knob(fidelity=0.4, strength=0.25) == (0.4, "fidelity 0.4")
    assert knob(pull=0.1, fidelity=0.4) == (0.1, "cli")
