"""Tiny random S3Diff-shaped files as users have them: a diffusers SD folder (the toy StableSR-sized UNet and
VAE) with S3Diff's weights file in the authors' layout and a toy-width degradation estimator (`de_net.pth`).

Random weights: they test wiring, strict loading and the modulation, not restoration quality. The guidance
MLPs are drawn at random with std 0.05 (the authors initialise them near zero, 1e-5, which would make every
degradation matrix ~0 and hide the modulation from the tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.stablesr_tiny import write_base

UNET_TARGETS = [
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
    "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj",
]  # fmt: skip
"""The authors' UNet LoRA targets (`target_modules_unet` in src/s3diff_tile.py)."""
VAE_TARGETS = r"^encoder\..*(conv1|conv2|conv_in|conv_shortcut|conv|conv_out|to_k|to_q|to_v|to_out\.0)$"
"""The authors' VAE LoRA targets: every convolution and attention projection of the encoder."""
ESTIMATOR_WIDTHS = (8, 16)


def random_guidance(rank_unet: int, rank_vae: int, generator: Any) -> dict[str, Any]:
    """The guidance module's tensors under studio's names, drawn at random (frequencies like torch.randn)."""
    import torch

    from studio.engines.onestep.s3diff.modulation import DegradationGuidance

    module = DegradationGuidance(rank_unet, rank_vae)
    state = {}
    for key, value in module.state_dict().items():
        scale = 1.0 if key == "frequencies" else 0.05
        state["guidance." + key] = torch.randn(value.shape, generator=generator) * scale
    return state


def make_s3diff_files(
    base: Path, folder: Path, rank_unet: int = 4, rank_vae: int = 4, seed: int = 0, scale: float = 0.2
) -> tuple[Path, Path]:
    """(s3diff weights .pkl, de_net.pth) for the base folder: adapters injected with PEFT as the authors do,
    every LoRA tensor and conv_in drawn at random (seeded), saved through the key table's inverse."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig

    from studio.engines.onestep.s3diff.degradation import DegradationEstimator
    from studio.engines.onestep.s3diff.keys import to_official

    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    unet.add_adapter(LoraConfig(r=rank_unet, target_modules=UNET_TARGETS))
    vae.add_adapter(LoraConfig(r=rank_vae, target_modules=VAE_TARGETS), adapter_name="vae_skip")
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, Any] = {}
    for prefix, model, keep in (("unet.", unet, ("lora", "conv_in")), ("vae.", vae, ("lora",))):
        for key, value in model.state_dict().items():
            if any(part in key for part in keep):
                noise = torch.randn(value.shape, generator=generator) * scale
                tensors[prefix + key] = noise + (value if "base_layer" in key else 0)
    tensors.update(random_guidance(rank_unet, rank_vae, generator))
    config = {
        "rank_unet": rank_unet,
        "rank_vae": rank_vae,
        "unet_lora_target_modules": UNET_TARGETS,
        "vae_lora_target_modules": VAE_TARGETS,
    }
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "s3diff_tiny.pkl"
    torch.save(to_official(tensors, config), weights)
    estimator = DegradationEstimator(*ESTIMATOR_WIDTHS)
    with torch.no_grad():
        for param in estimator.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    torch.save(estimator.state_dict(), folder / "de_net.pth")
    return weights, folder / "de_net.pth"


def write_s3diff(folder: Path, vae: Any = None, seed: int = 0) -> tuple[Path, Path, Path]:
    """(base folder, S3Diff weights file, estimator file) under `folder`."""
    base = write_base(folder / "base", vae=vae, seed=seed)
    weights, estimator = make_s3diff_files(base, folder / "s3diff", seed=seed + 1)
    return base, weights, estimator
