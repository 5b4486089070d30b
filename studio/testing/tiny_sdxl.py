"""Random-weight SDXL components (UNet with text_time conditions, two CLIP encoders, VAE, ControlNet).

For tests and benchmarks: the real code paths (the same loader users hit, the same conditioning) with
no download. `SDXL_UNET_CONFIG` is SDXL 1.0 base's UNet, for benchmarks of the real architecture;
`TINY_UNET_CONFIG` is the same block layout at toy width (as diffusers' own SDXL tests build it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
}
"""stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the fields that shape the network)."""
SDXL_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
"""SDXL's VAE (the SD VAE architecture with SDXL's scaling factor)."""
TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": [2, 4, 4],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "transformer_layers_per_block": [1, 1, 1],
    "projection_class_embeddings_input_dim": 80,
    "cross_attention_dim": 64,
    "norm_num_groups": 32,
}
"""SDXL's UNet layout at toy width (the widths of tests/fixtures/supir_tiny_keys.json): 6 x 8 time-id
features + 32 pooled text features = 80 added inputs."""
TINY_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "scaling_factor": 0.13025,
}
"""A random toy VAE (2x) matching the tiny SUPIR fixture's denoise encoder: wiring only; tests that
measure fidelity use the trained tiny photo VAE."""
SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}
"""SDXL base's scheduler: epsilon prediction on scaled-linear betas 0.00085 -> 0.012."""


def text_encoders(hidden_size: int, projection_dim: int, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """Two small CLIP text encoders (the second with a projection, as SDXL's) and their tokenizers."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.testing.tiny_sd import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        projection_dim=projection_dim,
        hidden_act="gelu",
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config).eval(), tokenizer, CLIPTextModelWithProjection(config).eval(), tiny_tokenizer()


def build_base(
    unet_config: dict[str, Any], vae: Any = None, vae_config: dict[str, Any] | None = None, seed: int = 0
) -> Any:
    """A `StableDiffusionXLPipeline` of random components (the VAE may be given, e.g. a trained one)."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel.from_config(unet_config).eval()
    if vae is None:
        vae = diffusers.AutoencoderKL.from_config(vae_config or TINY_VAE_CONFIG).eval()
    width = unet_config["cross_attention_dim"] // 2
    pooled = unet_config["projection_class_embeddings_input_dim"] - 6 * unet_config["addition_time_embed_dim"]
    text_encoder, tokenizer, text_encoder_2, tokenizer_2 = text_encoders(width, pooled, seed)
    scheduler = diffusers.EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG)
    return diffusers.StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )


def build_controlnet(unet: Any, vae_scale_factor: int, seed: int = 0) -> Any:
    """A ControlNet shaped like `unet` whose control-image embedding downsamples by the VAE's factor, with
    random (not zero) output convolutions, so it visibly steers."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    levels = vae_scale_factor.bit_length()  # factor 8 -> 4 widths (3 downsamplings), as SDXL's ControlNets
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256)[:levels]).eval()
    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            torch.nn.init.normal_(conv.weight, std=0.02)
    return controlnet


def save_base(pipe: Any, folder: Path) -> Path:
    """Write a diffusers folder (model_index.json + components) loadable by --model."""
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
