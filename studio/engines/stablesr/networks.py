"""StableSR's own modules on diffusers models (Wang et al. 2023, "Exploiting Diffusion Prior for Real-World
Image Super-Resolution"; written from the paper and IceClear/StableSR's code).

- `TimeAwareEncoder`: reads the VAE latent of the upscaled input plus the timestep and returns one feature map
  per UNet resolution (keyed by spatial size).
- `SpadeLayer`: out = GroupNorm(h) * (1 + gamma(f)) + beta(f) on a ResBlock's residual branch, after its last
  conv and before the skip add. `StableSRAdapter.attach(unet)` installs one per diffusers `ResnetBlock2D` with
  forward hooks on `conv2`, so the UNet's own weights and keys stay those of the SD 2.1 base.
- `CFWFusion`: the controllable feature wrapping of the decoder: F = F_d + w * C([F_e, F_d]) at the decoder
  levels that are neither first nor last, fed by the same VAE's encoder features of the input.
  `CFWFusion.attach(vae)` hooks a diffusers `AutoencoderKL`; w = 0 is the plain decoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

Features = dict[tuple[int, int], torch.Tensor]
"""Encoder features keyed by their (height, width): each UNet ResBlock picks the one of its own size."""


@dataclass(frozen=True)
class EncoderConfig:
    """EncoderUNetModelWT's hyperparameters; the defaults are StableSR's (configs/stableSRNew/*.yaml)."""

    in_channels: int = 4
    channels: int = 256
    channel_mult: tuple[int, ...] = (1, 1, 2, 2)
    layers_per_level: int = 2
    attention_levels: tuple[int, ...] = (0, 1, 2)  # the reference's attention_resolutions [4, 2, 1]
    heads: int = 4
    out_channels: int = 256
    norm_groups: int = 32
    spade_hidden: int = 128


def _group_norm(channels: int, groups: int, eps: float = 1e-5) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=eps, affine=True)


def _resnet(in_ch: int, out_ch: int, temb: int | None, groups: int, eps: float = 1e-5) -> nn.Module:
    from diffusers.models.resnet import ResnetBlock2D

    return ResnetBlock2D(in_channels=in_ch, out_channels=out_ch, temb_channels=temb, groups=groups, eps=eps)


def _attention(channels: int, heads: int, groups: int) -> nn.Module:
    from diffusers.models.attention_processor import Attention

    return Attention(
        channels,
        heads=heads,
        dim_head=channels // heads,
        norm_num_groups=groups,
        eps=1e-5,
        residual_connection=True,
        bias=True,
        upcast_softmax=True,
        _from_deprecated_attn_block=True,
    )


class _EncoderLevel(nn.Module):
    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)
        self.downsample = downsample


class TimeAwareEncoder(nn.Module):
    """The half UNet that turns the input's latent and the timestep into per-resolution features."""

    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.config = config
        ch, temb, groups = config.channels, config.channels * 4, config.norm_groups
        self.time_proj = Timesteps(ch, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(ch, temb)
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1)
        self.levels = nn.ModuleList()
        feature_channels = []
        for level, mult in enumerate(config.channel_mult):
            resnets, attentions, out = [], [], config.channels * mult
            for _ in range(config.layers_per_level):
                resnets.append(_resnet(ch, out, temb, groups))
                ch = out
                if level in config.attention_levels:
                    attentions.append(_attention(ch, config.heads, groups))
            last = level == len(config.channel_mult) - 1
            self.levels.append(_EncoderLevel(resnets, attentions, None if last else _downsample(ch)))
            if not last:
                feature_channels.append(ch)
        self.mid_resnets = nn.ModuleList([_resnet(ch, ch, temb, groups), _resnet(ch, ch, temb, groups)])
        self.mid_attention = _attention(ch, config.heads, groups)
        feature_channels.append(ch)
        self.feature_heads = nn.ModuleList(_resnet(c, config.out_channels, temb, groups) for c in feature_channels)

    def forward(self, latent: torch.Tensor, timestep: torch.Tensor) -> Features:
        """`timestep`: the original 0-999 diffusion timestep, one per batch item (or a scalar)."""
        timestep = timestep.reshape(-1).expand(latent.shape[0]) if timestep.numel() == 1 else timestep
        emb = self.time_embedding(self.time_proj(timestep).to(latent.dtype))
        h = self.conv_in(latent)
        taps = []
        for level in self.levels:
            for i, resnet in enumerate(level.resnets):
                h = resnet(h, emb)
                if len(level.attentions):
                    h = level.attentions[i](h)
            if level.downsample is not None:
                taps.append(h)
                h = level.downsample(h)
        h = self.mid_resnets[0](h, emb)
        h = self.mid_attention(h)
        h = self.mid_resnets[1](h, emb)
        taps.append(h)
        return {tuple(tap.shape[-2:]): head(tap, emb) for tap, head in zip(taps, self.feature_heads)}


def _downsample(channels: int) -> nn.Module:
    from diffusers.models.downsampling import Downsample2D

    return Downsample2D(channels, use_conv=True, out_channels=channels, padding=1, name="op")


class SpadeLayer(nn.Module):
    """Spatially adaptive modulation: GroupNorm(h) * (1 + gamma(f)) + beta(f); the norm is affine, as in StableSR."""

    def __init__(self, channels: int, feature_channels: int, hidden: int = 128, groups: int = 32) -> None:
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.shared = nn.Sequential(nn.Conv2d(feature_channels, hidden, 3, padding=1), nn.ReLU())
        self.to_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.to_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        normalized = self.norm(h.float()).to(h.dtype)  # GroupNorm in float32, as the reference's GroupNorm32
        actv = self.shared(features)
        return normalized * (1 + self.to_gamma(actv)) + self.to_beta(actv)


def spade_sites(unet: UNet2DConditionModel) -> list[tuple[str, nn.Module]]:
    """The UNet's ResBlocks in the reference's order (input blocks, middle, output blocks): one SPADE each."""
    sites = []
    for i, block in enumerate(unet.down_blocks):
        sites += [(f"down_blocks.{i}.resnets.{j}", r) for j, r in enumerate(block.resnets)]
    sites += [(f"mid_block.resnets.{j}", r) for j, r in enumerate(unet.mid_block.resnets)]
    for i, block in enumerate(unet.up_blocks):
        sites += [(f"up_blocks.{i}.resnets.{j}", r) for j, r in enumerate(block.resnets)]
    return sites


class StableSRAdapter(nn.Module):
    """Time-aware encoder + one SPADE layer per UNet ResBlock: everything StableSR trains on top of SD 2.1."""

    def __init__(self, spade_channels: list[int], config: EncoderConfig = EncoderConfig(), groups: int = 32):
        super().__init__()
        self.encoder = TimeAwareEncoder(config)
        self.spades = nn.ModuleList(
            SpadeLayer(c, config.out_channels, config.spade_hidden, groups) for c in spade_channels
        )
        self.scale = 1.0
        self._features: Features | None = None
        self._handles: list[Any] = []

    @classmethod
    def for_unet(cls, unet: UNet2DConditionModel, config: EncoderConfig = EncoderConfig()) -> StableSRAdapter:
        channels = [resnet.conv2.out_channels for _, resnet in spade_sites(unet)]
        return cls(channels, config, unet.config.norm_num_groups)

    def attach(self, unet: UNet2DConditionModel) -> None:
        """Hook every ResBlock's last conv so its output goes through the matching SPADE layer."""
        self.detach()
        sites = spade_sites(unet)
        if len(sites) != len(self.spades):
            raise ValueError(f"the UNet has {len(sites)} ResBlocks but the adapter {len(self.spades)} SPADE layers")
        for (_, resnet), spade in zip(sites, self.spades):
            self._handles.append(resnet.conv2.register_forward_hook(self._modulate(spade)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _modulate(self, spade: SpadeLayer):
        def hook(_module: nn.Module, _inputs: Any, h: torch.Tensor) -> torch.Tensor:
            if self._features is None:
                raise RuntimeError("StableSR UNet called outside `adapter.conditioned(...)`")
            key = tuple(h.shape[-2:])
            if key not in self._features:
                raise RuntimeError(f"no encoder feature of size {key}; have {sorted(self._features)}")
            out = spade(h, self._features[key])
            return out if self.scale == 1.0 else h + self.scale * (out - h)

        return hook

    @contextmanager
    def conditioned(self, latent: torch.Tensor, timestep: torch.Tensor) -> Iterator[Features]:
        """Within this block, UNet calls are modulated by the encoder's features of `latent` at `timestep`."""
        self._features = self.encoder(latent, timestep)
        try:
            yield self._features
        finally:
            self._features = None


class _DenseBlock(nn.Module):
    """ESRGAN's residual dense block: five 3x3 convs with dense connections, residual scaled by 0.2."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels + i * growth, growth if i < 4 else channels, 3, padding=1) for i in range(5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(nn.functional.leaky_relu(out, 0.2))
        return out * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, channels: int, growth: int = 32) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(_DenseBlock(channels, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x) * 0.2 + x


class _FuseBlock(nn.Module):
    """C([F_e, F_d]): ResBlock(2c -> c), two RRDBs, ResBlock(c -> c)."""

    def __init__(self, channels: int, groups: int = 32, rrdbs: int = 2) -> None:
        super().__init__()
        self.merge = _resnet(2 * channels, channels, None, groups, eps=1e-6)
        self.rrdbs = nn.Sequential(*(_RRDB(channels) for _ in range(rrdbs)))
        self.out = _resnet(channels, channels, None, groups, eps=1e-6)

    def forward(self, encoder_feature: torch.Tensor, decoder_feature: torch.Tensor) -> torch.Tensor:
        merged = self.merge(torch.cat([encoder_feature, decoder_feature], 1), None)
        return self.out(self.rrdbs(merged), None)


def cfw_levels(vae: AutoencoderKL) -> list[int]:
    """Encoder levels (0 = full resolution) whose features the decoder fuses: all but the first and last."""
    return list(range(1, len(vae.config.block_out_channels) - 1))


class CFWFusion(nn.Module):
    """StableSR's CFW fusion layers for a diffusers AutoencoderKL, keyed by encoder level."""

    def __init__(self, level_channels: dict[int, int], groups: int = 32) -> None:
        super().__init__()
        self.fuse = nn.ModuleDict({str(level): _FuseBlock(ch, groups) for level, ch in level_channels.items()})
        self.weight = 0.5
        self._features: dict[int, torch.Tensor] | None = None
        self._handles: list[Any] = []

    @classmethod
    def for_vae(cls, vae: AutoencoderKL) -> CFWFusion:
        channels = vae.config.block_out_channels
        return cls({level: channels[level] for level in cfw_levels(vae)}, vae.config.norm_num_groups)

    def attach(self, vae: AutoencoderKL) -> None:
        """Capture encoder features before each fused level's downsample; fuse before the decoder's upsample."""
        self.detach()
        last = len(vae.config.block_out_channels) - 1
        for level_name in self.fuse:
            level = int(level_name)
            down = vae.encoder.down_blocks[level].downsamplers[0]
            up = vae.decoder.up_blocks[last - level].upsamplers[0]
            self._handles.append(down.register_forward_pre_hook(self._capture(level)))
            self._handles.append(up.register_forward_pre_hook(self._fuse(level)))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _capture(self, level: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            if self._features is not None:
                self._features[level] = args[0]

        return hook

    def _fuse(self, level: int):
        def hook(_module: nn.Module, args: tuple) -> tuple | None:
            if self._features is None or self.weight == 0.0:
                return None
            h = args[0]
            feature = self._features.get(level)
            if feature is None or feature.shape[-2:] != h.shape[-2:]:
                raise RuntimeError(f"CFW: no encoder feature of size {tuple(h.shape[-2:])} at level {level}")
            return (h + self.weight * self.fuse[str(level)](feature.to(h.dtype), h), *args[1:])

        return hook

    @contextmanager
    def capturing(self) -> Iterator[dict[int, torch.Tensor]]:
        """Encoder calls inside this block record the features that the decoder calls inside it fuse."""
        self._features = {}
        try:
            yield self._features
        finally:
            self._features = None
