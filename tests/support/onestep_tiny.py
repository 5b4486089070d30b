"""Tiny random OSEDiff-shaped files as users have them: a diffusers SD folder (toy StableSR-sized UNet) and a
weights file in the authors' layout (plain dict: ranks, PEFT target lists, state dicts under PEFT names).

Random weights: they test wiring, strict loading and the knobs' direction, not restoration quality. The
target lists follow the authors' grouping (UNet adapters for down blocks + conv_in, up blocks + conv_out,
the rest; the VAE encoder's convolutions and attention plus quant_conv), written here from that rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.stablesr_tiny import write_base

UNET_LAYERS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "conv1",
    "conv2",
    "conv_shortcut",
    "proj_in",
    "proj_out",
    "conv_in",
    "conv_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv",
)


def _targets(module: Any, keep: Any) -> list[str]:
    import torch

    names = []
    for name, layer in module.named_modules():
        if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d) and name.split(".")[-1] in {"0", "2", *UNET_LAYERS}:
            if any(name.endswith(part) for part in UNET_LAYERS) and keep(name):
                names.append(name)
    return names


def unet_groups(unet: Any) -> dict[str, list[str]]:
    """The three UNet target lists as the authors group them."""
    encoder = _targets(unet, lambda n: "down_blocks" in n or n == "conv_in")
    decoder = _targets(unet, lambda n: "up_blocks" in n or n == "conv_out")
    others = _targets(unet, lambda n: n not in encoder and n not in decoder and "time_emb" not in n)
    return {
        "unet_lora_encoder_modules": encoder,
        "unet_lora_decoder_modules": decoder,
        "unet_lora_others_modules": others,
    }


def vae_targets(vae: Any) -> list[str]:
    return [*_targets(vae, lambda n: n.startswith("encoder.")), "quant_conv"]


def make_osediff_file(base: Path, path: Path, rank: int = 4, seed: int = 0, scale: float = 0.05) -> Path:
    """Write an OSEDiff weights file for the base folder: adapters injected with PEFT, every LoRA tensor and
    conv_in drawn at random (seeded), saved as the authors' `save_model` saves it."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from peft import LoraConfig

    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    groups = unet_groups(unet)
    for targets, name in zip(groups.values(), ("default_encoder", "default_decoder", "default_others"), strict=True):
        unet.add_adapter(LoraConfig(r=rank, target_modules=targets), adapter_name=name)
    vae_lists = vae_targets(vae)
    vae.add_adapter(LoraConfig(r=rank, target_modules=vae_lists), adapter_name="default_encoder")
    generator = torch.Generator().manual_seed(seed)
    state_unet = {k: v for k, v in unet.state_dict().items() if "lora" in k or "conv_in" in k}
    state_vae = {k: v for k, v in vae.state_dict().items() if "lora" in k}
    for state in (state_unet, state_vae):
        for key, value in state.items():
            state[key] = torch.randn(value.shape, generator=generator) * scale + (value if "base_layer" in key else 0)
    data = {
        **groups,
        "vae_lora_encoder_modules": vae_lists,
        "rank_unet": rank,
        "rank_vae": rank,
        "state_dict_unet": state_unet,
        "state_dict_vae": state_vae,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def write_osediff(folder: Path, vae: Any = None, seed: int = 0) -> tuple[Path, Path]:
    """(base folder, OSEDiff weights file) under `folder`."""
    base = write_base(folder / "base", vae=vae, seed=seed)
    return base, make_osediff_file(base, folder / "osediff_tiny.pkl", seed=seed + 1)
