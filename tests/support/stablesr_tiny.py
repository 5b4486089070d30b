"""Tiny random StableSR-shaped components saved as users' files: a diffusers SD folder, a ControlNet folder,
official-layout StableSR adapter (.ckpt) and CFW (.safetensors) files. Random weights: they test wiring,
loading and the knobs' direction, not restoration quality."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY_UNET: dict[str, Any] = {
    "sample_size": 16,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (2, 4),
    "use_linear_projection": True,
    "norm_num_groups": 32,
}
"""The UNet of tests/fixtures/stablesr_keys_tiny.json (toy StableSR: 32/64 channels, 32 groups as ldm)."""
TINY_VAE: dict[str, Any] = {
    "block_out_channels": (32, 32, 64, 64),
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": 0.18215,
}
"""The autoencoder of the toy CFW file."""


def official_value(key: str, shape: list[int]) -> Any:
    """The values tests/fixtures/make_stablesr_keys.py gives each key (seeded by its CRC32)."""
    import torch

    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    return torch.randn(shape, generator=generator) * (0.2 if len(shape) > 1 else 0.05)


def tiny_keys() -> dict[str, list[int]]:
    return json.loads((FIXTURES / "stablesr_keys_tiny.json").read_text())["keys"]


def write_official_files(folder: Path) -> tuple[Path, Path]:
    """(adapter .ckpt holding the spade + structcond keys, CFW .safetensors), both in the official layout."""
    import torch
    from safetensors.torch import save_file

    keys = tiny_keys()
    adapter = {
        k: official_value(k, s) for k, s in keys.items() if ".spade." in k or k.startswith("structcond_stage_model.")
    }
    cfw = {k: official_value(k, s) for k, s in keys.items() if not k.startswith(("model.", "structcond_stage_model."))}
    cfw["loss.logvar"] = torch.zeros(())
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": adapter, "global_step": 117}, folder / "stablesr_tiny.ckpt")
    save_file(cfw, str(folder / "cfw_tiny.safetensors"))
    return folder / "stablesr_tiny.ckpt", folder / "cfw_tiny.safetensors"


def write_base(folder: Path, vae: Any = None, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """A StableDiffusionPipeline folder with the toy StableSR UNet (and `vae`, default the toy CFW-shaped one)."""
    import diffusers
    import torch

    from studio.testing.tiny_sd import (
        SD_SCHEDULER_CONFIG,
        tiny_text_encoder,
        tiny_tokenizer,
    )

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(**TINY_UNET).eval()
    vae = vae if vae is not None else diffusers.AutoencoderKL(**TINY_VAE).eval()
    tokenizer = tiny_tokenizer()
    scheduler = diffusers.DDIMScheduler.from_config({**SD_SCHEDULER_CONFIG, "prediction_type": prediction_type})
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=tiny_text_encoder(len(tokenizer), 32),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def write_controlnet_base(folder: Path) -> tuple[Path, Path]:
    """(SD folder, ControlNet folder) from studio's toy SD 1.x components with a random tile-like ControlNet."""
    import diffusers

    from studio.testing.tiny_sd import build_sd_components

    parts = build_sd_components(controlnets=1)
    pipe = diffusers.StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=parts.unet,
        scheduler=parts.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "base", safe_serialization=True)
    parts.controlnets[0].save_pretrained(folder / "controlnet", safe_serialization=True)
    return folder / "base", folder / "controlnet"


TINY_TEXT: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 128,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,  # the file holds 3 resblocks: SD 2.x reads the penultimate layer
    "max_position_embeddings": 77,
    "vocab_size": 49408,  # CLIP's vocabulary: the shipped tokenizer's ids must fit
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
"""The toy OpenCLIP text tower of the toy full file, as a CLIPTextConfig."""


def tiny_module_configs() -> Any:
    """The toy full file's UNet/VAE/text configs, standing in for the shipped SD 2.1 ones."""
    from studio.engines.stablesr.components import ModuleConfigs

    unet = {**TINY_UNET, "in_channels": 4, "out_channels": 4}
    return ModuleConfigs(unet, dict(TINY_VAE), dict(TINY_TEXT))


def _text_tower_keys(width: int = 32, layers: int = 3, vocab: int = 49408) -> dict[str, list[int]]:
    """OpenCLIP's TextTransformer keys (cond_stage_model.model.*) at toy width."""
    keys = {
        "token_embedding.weight": [vocab, width],
        "positional_embedding": [77, width],
        "ln_final.weight": [width],
        "ln_final.bias": [width],
        "text_projection": [width, width],
        "logit_scale": [],
    }
    for layer in range(layers):
        block = f"transformer.resblocks.{layer}."
        keys.update(
            {
                block + "ln_1.weight": [width],
                block + "ln_1.bias": [width],
                block + "attn.in_proj_weight": [3 * width, width],
                block + "attn.in_proj_bias": [3 * width],
                block + "attn.out_proj.weight": [width, width],
                block + "attn.out_proj.bias": [width],
                block + "ln_2.weight": [width],
                block + "ln_2.bias": [width],
                block + "mlp.c_fc.weight": [4 * width, width],
                block + "mlp.c_fc.bias": [4 * width],
                block + "mlp.c_proj.weight": [width, 4 * width],
                block + "mlp.c_proj.bias": [width],
            }
        )
    return {"cond_stage_model.model." + key: shape for key, shape in keys.items()}


def full_file_state() -> dict[str, Any]:
    """A toy full StableSR checkpoint's state dict in the official layout: SPADE UNet, time-aware encoder,
    VAE (first_stage_model.*), OpenCLIP text tower and the schedule buffers; random values."""
    import torch

    from studio.engines.stablesr.keys import SCHEDULE_BUFFERS

    keys = tiny_keys()
    shapes = {k: s for k, s in keys.items() if k.startswith(("model.", "structcond_stage_model."))}
    vae = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
    shapes.update(
        {"first_stage_model." + k: s for k, s in keys.items() if k.startswith(vae) and "fusion_layer" not in k}
    )
    shapes.update(_text_tower_keys())
    state = {k: official_value(k, s) for k, s in shapes.items()}
    state.update({name: torch.linspace(0.01, 0.99, 1000) for name in SCHEDULE_BUFFERS})
    return state


def write_full_file(path: Path) -> Path:
    """The toy full file as a Lightning checkpoint, like stablesr_000117.ckpt."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": full_file_state(), "global_step": 117}, path)
    return path
