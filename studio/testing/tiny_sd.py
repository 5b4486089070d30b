"""Random-weight diffusion components for tests and benchmarks: real code paths, no download.

SD x4 upscalers (the real architecture or a toy-width one) and toy-width SD 1.x pipelines with
ControlNets (`build_sd_components`), for tests that compare the recipe with diffusers' own pipelines.

Same architecture as a config gives the same shapes and compute as real weights. The tokenizer is a
tiny byte-pair vocabulary (letters only), enough for CLIP's interface; the text encoder is one layer
of the width the UNet's cross-attention expects.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path
from typing import Any

from studio.diffusion.recipe import Components
from studio.engines.sd_x4.pipeline import UpscaleComponents
from studio.settings import project_root

REAL_CONFIG_DIR = project_root() / "configs" / "sd-x4"
TINY_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 32, 64],
    "layers_per_block": 1,
    "sample_size": 16,
    "in_channels": 7,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "use_linear_projection": True,
    "only_cross_attention": [True, True, False],
    "num_class_embeds": 400,
    "norm_num_groups": 8,
}
"""The x4 UNet's block layout at toy width: same code paths (concat conditioning, class labels, cross-attention)."""
TINY_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [16, 16, 32],
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "scaling_factor": 0.08333,
}
"""The x4 VAE's three levels (4x decode) at toy width."""
TINY_SD_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
"""An SD 1.x UNet at toy width (text cross-attention, epsilon prediction)."""
TINY_SD_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [16, 16, 16, 16],
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "scaling_factor": 0.18215,
}
"""SD's four-level VAE (8x) at toy width."""
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "DDIMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
}
"""Stable Diffusion 1.5's scheduler settings."""


def real_configs() -> dict[str, dict[str, Any]]:
    """The SD x4 upscaler's own configs (configs/sd-x4/*.json), keyed by component name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(REAL_CONFIG_DIR.glob("*.json"))}


def tiny_tokenizer(model_max_length: int = 77) -> Any:
    """A CLIPTokenizer over single letters, built offline from a vocabulary written to a temp folder."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for letter in string.ascii_lowercase:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(
            str(Path(folder) / "vocab.json"),
            str(Path(folder) / "merges.txt"),
            model_max_length=model_max_length,
            pad_token="<|endoftext|>",
        )


def build_components(
    unet_config: dict[str, Any],
    vae_config: dict[str, Any],
    scheduler_config: dict[str, Any] | None = None,
    low_res_scheduler_config: dict[str, Any] | None = None,
    seed: int = 0,
) -> UpscaleComponents:
    """Instantiate every component with random weights (seeded) from configs."""
    import diffusers
    import torch

    configs = real_configs()
    scheduler_config = scheduler_config or configs["scheduler"]
    low_res_scheduler_config = low_res_scheduler_config or configs["low_res_scheduler"]
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel.from_config(unet_config).eval()
    vae = diffusers.AutoencoderKL.from_config(vae_config).eval()
    tokenizer = tiny_tokenizer()
    text_encoder = tiny_text_encoder(len(tokenizer), unet_config["cross_attention_dim"])
    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
    low_res = getattr(diffusers, low_res_scheduler_config["_class_name"]).from_config(low_res_scheduler_config)
    return UpscaleComponents(vae, text_encoder, tokenizer, unet, scheduler, low_res)


def tiny_text_encoder(vocab_size: int, width: int) -> Any:
    """A one-layer CLIP text encoder of the width the UNet's cross-attention expects."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=1,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def tiny_controlnet(unet: Any, seed: int) -> Any:
    """A ControlNet copied from `unet` (as diffusers' from_unet does) with its zero-initialised output
    convolutions drawn at random, so that it actually changes the UNet's output in tests."""
    import torch
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16)).eval()
    generator = torch.Generator().manual_seed(seed)
    zero_convs = [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    with torch.no_grad():
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.1)
    return controlnet


def build_sd_components(controlnets: int = 1, seed: int = 0) -> Components:
    """A toy-width SD 1.x text-to-image pipeline's modules with `controlnets` random ControlNets."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel.from_config(TINY_SD_UNET_CONFIG).eval()
    vae = diffusers.AutoencoderKL.from_config(TINY_SD_VAE_CONFIG).eval()
    tokenizer = tiny_tokenizer()
    text_encoder = tiny_text_encoder(len(tokenizer), TINY_SD_UNET_CONFIG["cross_attention_dim"])
    scheduler = diffusers.DDIMScheduler.from_config(SD_SCHEDULER_CONFIG)
    nets = [tiny_controlnet(unet, seed + 1 + index) for index in range(controlnets)]
    return Components(vae, text_encoder, tokenizer, unet, scheduler, controlnets=nets)


def save_as_diffusers_folder(components: UpscaleComponents, folder: Path) -> Path:
    """Write a StableDiffusionUpscalePipeline folder (model_index.json + components) loadable by --model."""
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        low_res_scheduler=components.low_res_scheduler,
        scheduler=components.scheduler,
        max_noise_level=components.max_noise_level,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
