"""The SD 2.1 modules StableSR's official files are loaded into, built without reading any weights.

A full official file (stablesr_000117.ckpt, stablesr_768v_000139.ckpt) holds the whole SD 2.1 (UNet, VAE,
OpenCLIP text tower): with it no SD folder is needed. Its modules are built on the meta device from the
configs studio ships (configs/stablesr: SD 2.1's UNet, VAE and text-encoder configs, the DDIM schedule), the
tokenizer from CLIP's merges shipped in configs/clip (MIT), and the file's tensors are then assigned into
them one at a time. With a diffusers base, the same meta modules come from the base's own configs, so
`--dry-run` checks every key and shape of an official file against the modules a real run fills.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from studio.diffusion.clip_tokenizer import clip_tokenizer
from studio.diffusion.loading import ModelSource
from studio.diffusion.recipe import Components
from studio.settings.layers import project_root

if TYPE_CHECKING:
    import torch

EPSILON, V_PREDICTION = "epsilon", "v_prediction"
SAMPLE_SIZE = {EPSILON: 64, V_PREDICTION: 96}  # latent size the 512 and 768 models were trained at


@dataclass(frozen=True)
class ModuleConfigs:
    """Configs of the UNet, VAE and text encoder (dicts as diffusers/transformers read them)."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]


def shipped_configs(prediction: str = EPSILON) -> ModuleConfigs:
    """SD 2.1's configs as studio ships them, the UNet's native size set for the 512 or 768 model."""
    folder = project_root() / "configs" / "stablesr"
    unet = json.loads((folder / "unet.json").read_text())
    unet["sample_size"] = SAMPLE_SIZE[prediction]
    vae = json.loads((folder / "vae.json").read_text())
    return ModuleConfigs(unet, vae, json.loads((folder / "text_encoder.json").read_text()))


def base_configs(source: ModelSource) -> ModuleConfigs:
    """The configs of a diffusers base (folder or cached hub id; no download); SD 2.1's for a single file,
    whose config diffusers would otherwise fetch from the hub (StableSR files fit only SD 2.1)."""
    if source.kind == "file":
        return shipped_configs()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    where: dict[str, Any] = {"revision": source.revision, "local_files_only": True} if source.kind == "hub" else {}
    text = CLIPTextConfig.from_pretrained(source.ref, subfolder="text_encoder", **where).to_dict()
    return ModuleConfigs(
        dict(UNet2DConditionModel.load_config(source.ref, subfolder="unet", **where)),
        dict(AutoencoderKL.load_config(source.ref, subfolder="vae", **where)),
        text,
    )


def meta_modules(configs: ModuleConfigs, dtype: torch.dtype) -> tuple[Any, Any, Any]:
    """(UNet, VAE, text encoder) on the meta device in `dtype`: shapes and dtypes, no memory."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(configs.unet)
        vae = AutoencoderKL.from_config(configs.vae)
        text = CLIPTextModel(CLIPTextConfig(**configs.text_encoder))
    # torch's own Module.to: diffusers' override warns about keeping modules in fp32, which these have none of
    return tuple(torch.nn.Module.to(module, dtype).eval() for module in (unet, vae, text))


def standalone_components(dtype: torch.dtype, prediction: str) -> Components:
    """SD 2.1 components for a full official file: meta modules from the shipped configs, the SD 2.x CLIP
    tokenizer and the DDIM schedule; `finish` them once the file's tensors are in."""
    from diffusers import DDIMScheduler

    unet, vae, text = meta_modules(shipped_configs(prediction), dtype)
    schedule = json.loads((project_root() / "configs" / "stablesr" / "scheduler.json").read_text())
    scheduler = DDIMScheduler.from_config({**schedule, "prediction_type": prediction})
    return Components(vae, text, clip_tokenizer(), unet, scheduler)


def finish(components: Components) -> None:
    """Recreate the buffers a checkpoint does not hold (CLIP's position ids); nothing may stay on meta."""
    import torch

    for module_name, module in (("unet", components.unet), ("vae", components.vae), ("text", components.text_encoder)):
        for name, buffer in list(module.named_buffers()):
            if not buffer.is_meta:
                continue
            if not name.endswith("position_ids"):
                raise RuntimeError(f"{module_name}.{name} was not filled by the checkpoint")
            owner = module.get_submodule(name.rpartition(".")[0])
            positions = torch.arange(buffer.shape[-1], dtype=buffer.dtype).expand(buffer.shape)
            owner.register_buffer("position_ids", positions, persistent=False)
    for module_name, module in (("unet", components.unet), ("vae", components.vae), ("text", components.text_encoder)):
        left = [name for name, p in module.named_parameters() if p.is_meta]
        if left:
            raise RuntimeError(f"{module_name}.{left[0]} was not filled by the checkpoint")
