"""Check studio's SUPIR modules against the reference code: same weights, same inputs, same outputs.

Builds SUPIR's GLVControl adaptor and its connector-steered UNet (LightGLVUNet's forward) at the toy
widths of tests/fixtures/supir_tiny_keys.json with random weights, writes them in the official key
layout (plus the UNet in sgm's layout), loads that into studio's modules on diffusers' SDXL UNet through
the real key maps, and prints the largest differences of the ten adaptor features and of the steered
UNet's output as JSON. Needs a SUPIR checkout (see scripts/derive_supir_keys.py):

    python scripts/check_supir_parity.py /path/to/SUPIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from derive_supir_keys import TINY, connectors_like, import_reference  # noqa: E402


def main(root: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    reference = import_reference(root)
    from sgm.modules.diffusionmodules.model import Encoder
    from sgm.modules.diffusionmodules.openaimodel import UNetModel
    from sgm.modules.diffusionmodules.util import timestep_embedding

    from studio.diffusion.conditioning import Conditioning
    from studio.engines.supir import networks as studio_supir
    from studio.testing import tiny_sdxl as random_sdxl

    args = dict(
        adm_in_channels=TINY["adm_in_channels"],
        num_classes="sequential",
        in_channels=4,
        out_channels=4,
        model_channels=TINY["model_channels"],
        attention_resolutions=[4, 2],
        num_res_blocks=2,
        channel_mult=TINY["channel_mult"],
        num_head_channels=TINY["num_head_channels"],
        use_spatial_transformer=True,
        use_linear_in_transformer=True,
        transformer_depth=TINY["transformer_depth"],
        context_dim=TINY["context_dim"],
        legacy=False,
        spatial_transformer_attn_type="softmax",
    )
    torch.manual_seed(0)
    control = reference.GLVControl(**args, input_upscale=1).eval()
    steered = reference.LightGLVUNet.__new__(reference.LightGLVUNet)
    UNetModel.__init__(steered, **args)  # LightGLVUNet's own __init__ hard-codes SDXL's widths
    steered.project_modules = connectors_like(reference, TINY)
    steered.progressive_mask_nums = []
    steered.eval()
    encoder = Encoder(
        double_z=True,
        z_channels=4,
        resolution=256,
        in_channels=3,
        out_ch=3,
        ch=TINY["vae_ch"],
        ch_mult=TINY["vae_ch_mult"],
        num_res_blocks=2,
        attn_resolutions=[],
        dropout=0.0,
    )
    with torch.no_grad():
        for module in (control, steered, encoder):
            for param in module.parameters():
                param.normal_(0, 0.05)  # the zero-initialised convolutions get weights too

    state = {f"model.control_model.{k}": v for k, v in control.state_dict().items()}
    unet_ldm = {f"model.diffusion_model.{k}": v for k, v in steered.state_dict().items()}
    state.update({k: v for k, v in unet_ldm.items() if ".project_modules." in k})
    state.update({f"first_stage_model.denoise_encoder.{k}": v for k, v in encoder.state_dict().items()})
    unet = UNet2DConditionModel.from_config(random_sdxl.TINY_UNET_CONFIG).eval()
    unet.load_state_dict(
        convert_ldm_unet_checkpoint(
            {k: v for k, v in unet_ldm.items() if ".project_modules." not in k}, dict(unet.config)
        ),
        strict=True,
    )
    vae_config = AutoencoderKL.from_config(random_sdxl.TINY_VAE_CONFIG).config
    adapter = studio_supir.load_official(state, "parity", unet.config, vae_config, torch.float32)

    x, z_lq = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    t = torch.tensor([500])
    context, pooled = torch.randn(1, 77, 64), torch.randn(1, 32)
    time_ids = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]])
    y = torch.cat([pooled, timestep_embedding(time_ids.flatten(), 8).reshape(1, -1)], dim=1)
    cond = Conditioning({"encoder_hidden_states": context, "text_embeds": pooled, "time_ids": time_ids})
    with torch.no_grad():
        ref_features = control(z_lq, t, x, context, y)
        ref_out = steered(x, t, context, y, control=ref_features, control_scale=0.7)
        features = adapter.adaptor(x, t, z_lq, cond)
        out = studio_supir.controlled_forward(unet, adapter.connectors, x, t, cond, features, 0.7)
        pixels = torch.rand(1, 3, 32, 32) * 2 - 1
        ref_moments, moments = encoder(pixels), adapter.denoise_encoder(pixels)
    print(
        json.dumps(
            {
                "adaptor_features_max_abs_diff": max(
                    float((a - b).abs().max()) for a, b in zip(ref_features, features)
                ),
                "steered_unet_max_abs_diff": float((ref_out - out).abs().max()),
                "steered_unet_output_std": float(ref_out.std()),
                "denoise_encoder_max_abs_diff": float((ref_moments - moments).abs().max()),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
