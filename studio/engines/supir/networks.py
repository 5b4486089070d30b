"""SUPIR's own modules on diffusers' SDXL, and the strict key map of the published SUPIR-v0Q/v0F files.

SUPIR (Yu et al. 2024) adds three parts to SDXL, all held by its checkpoint:
- the adaptor (`model.control_model`, GLVControl): a copy of SDXL's encoder and middle block whose input is
  conv_in(x_t) + zero-conv(z_LQ); it returns ten features (every encoder stage's output and the middle's);
- connectors in SDXL's decoder (`model.diffusion_model.project_modules.0-11`): ZeroSFT where a skip
  connection joins ([h_d, h_s + Z(c)], GroupNorm, (1 + gamma(c)) / beta(c) modulation, mixed with the
  plain concatenation by the control scale s) and ZeroCrossAttn before the two upsamplers;
- the denoise encoder (`first_stage_model.denoise_encoder`): a fine-tuned VAE encoder giving z_LQ.
Here the adaptor is built from diffusers' UNet blocks (so its keys are diffusers' UNet keys, mapped from
the ldm layout with diffusers' own converter) and the decoder pass reuses the SDXL UNet's blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from studio.engines.supir.keys import PREFIXES
from studio.errors import UsageError

if TYPE_CHECKING:
    from studio.diffusion.conditioning import Conditioning

HIDDEN = 128  # ZeroSFT's shared hidden width


def connector_widths(unet_config: Any) -> tuple[list[int], list[int]]:
    """(feature widths, decoder widths) of the ten adaptor features, for an SDXL-shaped UNet.

    Features: conv_in and level 0 (4 x c0), level 1 (3 x c1), level 2 and the middle (3 x c2). Decoder
    widths are those of the hidden state each feature's connector joins (0: the middle, nothing joined).
    """
    widths = list(unet_config.block_out_channels)
    if len(widths) != 3 or unet_config.layers_per_block != 2:
        raise UsageError(
            "SUPIR's connectors fit SDXL-shaped UNets (3 levels, 2 layers per block); "
            f"this UNet has {len(widths)} levels and {unet_config.layers_per_block} layers"
        )
    c0, c1, c2 = widths
    return [c0] * 4 + [c1] * 3 + [c2] * 3, [c0] * 2 + [c1] * 3 + [c2] * 4 + [0]


class ZeroSFT(nn.Module):
    """out = GN([h_d, h_s + Z(c)]) (1 + Zmul(phi(c))) + Zadd(phi(c)), phi = SiLU(Conv3x3(c)); s mixes it
    with the unmodulated [h_d, h_s]. Without h_d (after the middle block) h_s alone is modulated."""

    def __init__(self, cond_channels: int, skip_channels: int, decoder_channels: int = 0) -> None:
        super().__init__()
        total = skip_channels + decoder_channels
        self.param_free_norm = nn.GroupNorm(32, total)
        self.mlp_shared = nn.Sequential(nn.Conv2d(cond_channels, HIDDEN, 3, padding=1), nn.SiLU())
        self.zero_mul = nn.Conv2d(HIDDEN, total, 3, padding=1)
        self.zero_add = nn.Conv2d(HIDDEN, total, 3, padding=1)
        self.zero_conv = nn.Conv2d(cond_channels, skip_channels, 1)

    def forward(
        self, cond: torch.Tensor, skip: torch.Tensor, decoder: torch.Tensor | None, scale: float
    ) -> torch.Tensor:
        raw = skip if decoder is None else torch.cat([decoder, skip], dim=1)
        joined = skip + self.zero_conv(cond)
        if decoder is not None:
            joined = torch.cat([decoder, joined], dim=1)
        actv = self.mlp_shared(cond)
        normed = _group_norm32(self.param_free_norm, joined)
        out = normed * (self.zero_mul(actv) + 1) + self.zero_add(actv)
        return out * scale + raw * (1 - scale)


class ZeroCrossAttn(nn.Module):
    """x + s * Attention(GN(x) as queries, GN(c) as keys/values): the decoder state reads the adaptor's."""

    def __init__(self, context_channels: int, query_channels: int) -> None:
        super().__init__()
        from diffusers.models.attention_processor import Attention

        self.attn = Attention(
            query_channels,
            cross_attention_dim=context_channels,
            heads=query_channels // 64,
            dim_head=64,
            bias=False,
            out_bias=True,
        )
        self.norm1 = nn.GroupNorm(32, query_channels)
        self.norm2 = nn.GroupNorm(32, context_channels)

    def forward(self, cond: torch.Tensor, x: torch.Tensor, scale: float) -> torch.Tensor:
        b, c, h, w = x.shape
        query = _group_norm32(self.norm1, x).flatten(2).transpose(1, 2)
        context = _group_norm32(self.norm2, cond).flatten(2).transpose(1, 2)
        attended = self.attn(query, encoder_hidden_states=context).transpose(1, 2).reshape(b, c, h, w)
        return x + attended * scale


def _group_norm32(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm computed in float32 (as sgm's GroupNorm32), returned in x's dtype."""
    weight = norm.weight.float() if norm.weight is not None else None
    bias = norm.bias.float() if norm.bias is not None else None
    return nn.functional.group_norm(x.float(), norm.num_groups, weight, bias, norm.eps).to(x.dtype)


def build_connectors(unet_config: Any) -> nn.ModuleList:
    """The twelve connectors in SUPIR's order: ZeroSFT at 0-2, 4-6, 8-11, ZeroCrossAttn at 3 and 7."""
    features, decoder = connector_widths(unet_config)
    modules = nn.ModuleList(ZeroSFT(features[i], features[i], decoder[i]) for i in range(10))
    for i in (6, 3):
        modules.insert(i, ZeroCrossAttn(features[i], decoder[i]))
    return modules


class SupirAdaptor(nn.Module):
    """SDXL's encoder and middle block (diffusers blocks, own weights) plus `hint`, the zero-conv of z_LQ."""

    def __init__(self, unet_config: Any) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        with torch.device("meta"):
            template = UNet2DConditionModel.from_config(unet_config)
        for name in (
            "conv_in",
            "time_proj",
            "time_embedding",
            "add_time_proj",
            "add_embedding",
            "down_blocks",
            "mid_block",
        ):
            setattr(self, name, getattr(template, name))
        self.hint = nn.Conv2d(unet_config.in_channels, unet_config.block_out_channels[0], 3, padding=1, device="meta")

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_lq: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        """The ten features for the noisy latent x (already scaled by c_in) at timestep t."""
        context = cond["encoder_hidden_states"]
        emb = embedding(self, x, t, cond)
        h, features = run_encoder(self, self.conv_in(x) + self.hint(z_lq.to(x.dtype)), emb, context)
        return [*features, self.mid_block(h, emb, encoder_hidden_states=context)]


def run_encoder(
    parts: Any, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """SDXL's down blocks from conv_in's output h: (last hidden state, every stage's output incl. h)."""
    outputs = [h]
    for block in parts.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
        else:
            h, res = block(hidden_states=h, temb=emb)
        outputs.extend(res)
    return h, outputs


def embedding(parts: Any, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """SDXL's timestep embedding plus its added text/size embedding, as diffusers' UNet computes them."""
    t_emb = parts.time_proj(t.reshape(-1).expand(x.shape[0]).to(x.device)).to(x.dtype)
    emb = parts.time_embedding(t_emb)
    time_ids = parts.add_time_proj(cond["time_ids"].flatten()).reshape(x.shape[0], -1)
    added = torch.cat([cond["text_embeds"], time_ids], dim=-1).to(emb.dtype)
    return emb + parts.add_embedding(added)


class SupirAdapter(nn.Module):
    """Everything a SUPIR checkpoint adds: adaptor, connectors, denoise encoder."""

    def __init__(self, unet_config: Any, vae_config: Any) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Encoder

        self.adaptor = SupirAdaptor(unet_config)
        with torch.device("meta"):
            self.connectors = build_connectors(unet_config)
            self.denoise_encoder = Encoder(
                in_channels=vae_config.in_channels,
                out_channels=vae_config.latent_channels,
                down_block_types=tuple(vae_config.down_block_types),
                block_out_channels=tuple(vae_config.block_out_channels),
                layers_per_block=vae_config.layers_per_block,
                norm_num_groups=vae_config.norm_num_groups,
                double_z=True,
            )

    def stage1_latent(self, vae: Any, pixels: Any, tile: int = 0, pad: int = 16) -> torch.Tensor:
        """z_LQ: the posterior mode of the denoise encoder (through the VAE's quant_conv), scaled; `pixels` a
        tensor or `HostPixels` in [-1, 1], encoded in `tile`-cell tiles with shared GroupNorm statistics."""
        from studio.diffusion import tiled_vae

        moments = DenoiseMoments(self.denoise_encoder, vae.quant_conv, vae.dtype)
        return tiled_vae.encode(moments, pixels, tile, pad) * vae.config.scaling_factor

    def conditioned_model(self, unet: Any, scale: Any) -> Any:
        """The SDXL UNet steered through the connectors: model(x, t, cond, window) -> epsilon."""
        from studio.diffusion.guidance import scale_at

        def model(x: torch.Tensor, t: torch.Tensor, cond: Conditioning, window: Any) -> torch.Tensor:
            cond = cond.crop(window)
            features = self.adaptor(x, t, cond["z_lq"], cond)
            return controlled_forward(unet, self.connectors, x, t, cond, features, scale_at(scale, t))

        return model


class DenoiseMoments(nn.Module):
    """The denoise encoder then the VAE's quant_conv, as one encoder module for `tiled_vae.encode`."""

    def __init__(self, encoder: nn.Module, quant_conv: nn.Module | None, vae_dtype: torch.dtype) -> None:
        super().__init__()
        # not `encoder`: tiled_vae takes a module with an `encoder` for a whole VAE
        self.denoise, self.quant_conv, self.vae_dtype = encoder, quant_conv, vae_dtype
        self.down_blocks = encoder.down_blocks  # what tiled_vae reads the downsampling factor from

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        moments = self.denoise(pixels.to(next(self.denoise.parameters()).dtype))
        return moments if self.quant_conv is None else self.quant_conv(moments.to(self.vae_dtype))


def controlled_forward(
    unet: Any,
    connectors: nn.ModuleList,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    features: list[torch.Tensor],
    scale: float,
) -> torch.Tensor:
    """SDXL's UNet with SUPIR's connectors, used counting down: the last after the middle block, then one per
    decoder stage k = 0..8 joining its skip connection with feature 8 - k, and a cross-attention before
    each upsampler reading the same feature (connectors 7 and 3 for SDXL)."""
    context = cond["encoder_hidden_states"]
    emb = embedding(unet, x, t, cond)
    h, skips = run_encoder(unet, unet.conv_in(x), emb, context)
    h = unet.mid_block(h, emb, encoder_hidden_states=context)
    index = len(connectors) - 1
    h = connectors[index](features[-1], h, None, scale)
    index -= 1
    stage = 0
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            feature = features[len(features) - 2 - stage]
            h = connectors[index](feature, skips.pop(), h, scale)
            index -= 1
            h = resnet(h, emb)
            if attentions is not None:
                h = attentions[j](h, encoder_hidden_states=context, return_dict=False)[0]
            if j == len(block.resnets) - 1 and block.upsamplers is not None:
                h = connectors[index](feature, h, scale)
                index -= 1
                for upsampler in block.upsamplers:
                    h = upsampler(h)
            stage += 1
    h = unet.conv_act(unet.conv_norm_out(h)) if unet.conv_norm_out is not None else h
    return unet.conv_out(h)


# ------------------------------------------------------------------------------------------ key map
def to_studio_keys(state: dict[str, Any], unet_config: Any, vae_config: Any) -> dict[str, Any]:
    """Official keys -> SupirAdapter keys. Keys outside the three parts (training state) are ignored;
    every key inside them must map one to one, or a UsageError names the first that does not."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    parts = {name: {k[len(p) :]: v for k, v in state.items() if k.startswith(p)} for name, p in PREFIXES.items()}
    for name, part in parts.items():
        if not part:
            raise UsageError(f"not a SUPIR checkpoint: no '{PREFIXES[name]}*' keys")
    adaptor = dict(parts["adaptor"])
    hint = {f"hint.{k.rsplit('.', 1)[1]}": adaptor.pop(k) for k in list(adaptor) if k.startswith("input_hint_block.0.")}
    unet = convert_ldm_unet_checkpoint({f"model.diffusion_model.{k}": v for k, v in adaptor.items()}, dict(unet_config))
    _check_one_to_one("adaptor", adaptor, unet)
    encoder = convert_ldm_vae_checkpoint(
        {f"encoder.{k}": v for k, v in parts["denoise_encoder"].items()}, dict(vae_config)
    )
    _check_one_to_one("denoise_encoder", parts["denoise_encoder"], encoder)
    mapped = {f"adaptor.{k}": v for k, v in {**unet, **hint}.items()}
    mapped.update({f"connectors.{k}": v for k, v in parts["connectors"].items()})
    mapped.update({f"denoise_{k}": v for k, v in encoder.items()})
    return mapped


def _check_one_to_one(part: str, source: dict[str, Any], converted: dict[str, Any]) -> None:
    if len(converted) != len(source):
        raise UsageError(
            f"SUPIR checkpoint: {len(source)} '{PREFIXES[part]}*' keys map to {len(converted)} "
            "module keys; the file does not have SUPIR's layout"
        )


def load_strict(adapter: SupirAdapter, mapped: dict[str, torch.Tensor], origin: str) -> None:
    """Every module key present with its shape and every file key used, else one line naming the key."""
    from studio.diffusion.loading import load_exactly

    load_exactly(adapter, mapped, origin, "SUPIR", "is this SUPIR-v0Q/v0F for this SDXL base?")


def load_official(
    state: dict[str, torch.Tensor], origin: str, unet_config: Any, vae_config: Any, dtype: torch.dtype
) -> SupirAdapter:
    """A SupirAdapter with the weights of a published SUPIR checkpoint's state dict, strictly mapped."""
    adapter = SupirAdapter(unet_config, vae_config)
    mapped = {k: v.to(dtype) for k, v in to_studio_keys(state, unet_config, vae_config).items()}
    load_strict(adapter, mapped, origin)
    return adapter.eval()
