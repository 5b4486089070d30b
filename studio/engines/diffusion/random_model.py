"""Random-weight SD x4 upscalers for tests and benchmarks: real code paths, no download.

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

from studio.engines.diffusion.upscale_pipeline import UpscaleComponents
from studio.settings import project_root

REAL_CONFIG_DIR = project_root() / "configs" / "sd-x4"
TINY_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": [32, 32, 64], "layers_per_block": 1, "sample_size": 16, "in_channels": 7,
    "out_channels": 4, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32,
    "attention_head_dim": 8, "use_linear_projection": True, "only_cross_attention": [True, True, False],
    "num_class_embeds": 400, "norm_num_groups": 8,
}
"""The x4 UNet's block layout at toy width: same code paths (concat conditioning, class labels, cross-attention)."""
TINY_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [16, 16, 32], "in_channels": 3, "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
    "latent_channels": 4, "layers_per_block": 1, "norm_num_groups": 8, "scaling_factor": 0.08333,
}
"""The x4 VAE's three levels (4x decode) at toy width."""


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
        return CLIPTokenizer(str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"),
                             model_max_length=model_max_length, pad_token="<|endoftext|>")


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
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = real_configs()
    scheduler_config = scheduler_config or configs["scheduler"]
    low_res_scheduler_config = low_res_scheduler_config or configs["low_res_scheduler"]
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel.from_config(unet_config).eval()
    vae = diffusers.AutoencoderKL.from_config(vae_config).eval()
    tokenizer = tiny_tokenizer()
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=unet_config["cross_attention_dim"], intermediate_size=64,
        num_attention_heads=4, num_hidden_layers=1, max_position_embeddings=77, bos_token_id=0,
        eos_token_id=1, pad_token_id=1,
    )
    text_encoder = CLIPTextModel(text_config).eval()
    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
    low_res = getattr(diffusers, low_res_scheduler_config["_class_name"]).from_config(low_res_scheduler_config)
    return UpscaleComponents(vae, text_encoder, tokenizer, unet, scheduler, low_res)


def save_as_diffusers_folder(components: UpscaleComponents, folder: Path) -> Path:
    """Write a StableDiffusionUpscalePipeline folder (model_index.json + components) loadable by --model."""
    from diffusers import StableDiffusionUpscalePipeline

    pipe = StableDiffusionUpscalePipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, low_res_scheduler=components.low_res_scheduler, scheduler=components.scheduler,
        max_noise_level=components.max_noise_level,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
