"""The published StableSR checkpoints -> diffusers modules + studio's StableSR modules, strictly.

Three layouts (see tests/fixtures/stablesr_keys_*.json for every key and shape):
- full (stablesr_000117.ckpt, stablesr_768v_000139.ckpt): `model.diffusion_model.*` (SD 2.1 UNet with SPADE),
  `structcond_stage_model.*` (time-aware encoder), `first_stage_model.*` (VAE), `cond_stage_model.model.*`
  (OpenCLIP text tower) and the DDPM schedule buffers;
- adapter (webui_768v_139.ckpt): only the SPADE and encoder keys, loaded on top of a diffusers SD 2.1 base;
- cfw (vqgan_cfw_00011.ckpt): `encoder.*`, `decoder.*` with `fusion_layer_{1,2}`, quant convs, and `loss.*`.

Every key must land on exactly one parameter of the right shape and every parameter must be filled; the first
key that does not fit is named in one line. Keys dropped on purpose are listed here: the schedule buffers
(the scheduler recomputes them), the text tower's last layer, projection and logit scale (SD 2.x uses the
penultimate layer's states), and the CFW file's training loss.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from studio.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from studio.engines.stablesr.networks import EncoderConfig

Transform = Callable[["torch.Tensor"], "torch.Tensor"]
Placement = tuple[str, str, Transform]  # (target module, key in its state dict, tensor transform)

SCHEDULE_BUFFERS = frozenset(
    {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    }
)
TEXT_PREFIX = "cond_stage_model.model."


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _squeeze_1x1(tensor: torch.Tensor) -> torch.Tensor:
    """Conv weights of a 1x1 / conv1d attention projection -> Linear weights."""
    return tensor.reshape(tensor.shape[0], -1) if tensor.dim() > 2 else tensor


def _thirds(index: int) -> Transform:
    """One of q, k, v from a fused [q; k; v] projection (OpenCLIP's in_proj)."""
    return lambda tensor: tensor.chunk(3, dim=0)[index]


def _legacy_qkv(index: int, heads: int) -> Transform:
    """One of q, k, v from the reference's QKVAttentionLegacy projection: rows ordered head, (q, k, v), channel."""

    def take(tensor: torch.Tensor) -> torch.Tensor:
        rows = tensor.shape[0] // 3
        split = tensor.reshape(heads, 3, rows // heads, *tensor.shape[1:])[:, index]
        return _squeeze_1x1(split.reshape(rows, *tensor.shape[1:]))

    return take


_LDM_RESBLOCK = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_VAE_RESBLOCK = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
    "conv_out": "conv_shortcut",
}
_SPADE = {"param_free_norm": "norm", "mlp_shared.0": "shared.0", "mlp_gamma": "to_gamma", "mlp_beta": "to_beta"}


def _rename(rest: str, table: Mapping[str, str]) -> str | None:
    """'in_layers.2.weight' -> 'conv1.weight' using the longest matching prefix in `table`."""
    for old in sorted(table, key=len, reverse=True):
        if rest.startswith(old + "."):
            return table[old] + rest[len(old) :]
    return None


def _split_block(rest: str) -> tuple[int, int, str] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(.+)", rest)
    return (int(match[1]), int(match[2]), match[3]) if match else None


class StableSRKeyMap:
    """Computes where each official key goes, from the shapes of the target modules themselves."""

    def __init__(
        self,
        unet: nn.Module | None,
        encoder: EncoderConfig,
        vae: nn.Module | None = None,
        text_encoder: nn.Module | None = None,
    ) -> None:
        from studio.engines.stablesr.networks import spade_sites

        self.layers = unet.config.layers_per_block if unet is not None else 0
        self.down_attention = [hasattr(b, "attentions") for b in unet.down_blocks] if unet is not None else []
        self.up_attention = [hasattr(b, "attentions") for b in unet.up_blocks] if unet is not None else []
        self.sites = [name for name, _ in spade_sites(unet)] if unet is not None else []
        self.heads = encoder.heads
        self.encoder_layers = encoder.layers_per_level
        self.vae_levels = len(vae.config.block_out_channels) if vae is not None else 0
        self.text_layers = text_encoder.config.num_hidden_layers if text_encoder is not None else 0
        text_keys = text_encoder.state_dict() if text_encoder is not None else {}
        self.text_root = "text_model." if any(k.startswith("text_model.") for k in text_keys) else ""

    # -- the UNet (model.diffusion_model.*) ------------------------------------------------------------------
    def unet(self, rest: str) -> list[Placement] | None:
        fixed = {
            "time_embed.0.": "time_embedding.linear_1.",
            "time_embed.2.": "time_embedding.linear_2.",
            "input_blocks.0.0.": "conv_in.",
            "out.0.": "conv_norm_out.",
            "out.2.": "conv_out.",
        }
        for old, new in fixed.items():
            if rest.startswith(old):
                return [("unet", new + rest[len(old) :], _same)]
        where = self._unet_block(rest)
        if where is None:
            return None
        path, kind, inner = where
        if kind == "attention":
            return [("unet", f"{path}.{inner}", _same)]
        if kind == "sampler":
            layer, _, param = inner.partition(".")
            return [("unet", f"{path}.conv.{param}", _same)] if layer in ("op", "conv") else None
        if inner.startswith("spade."):
            renamed = _rename(inner[len("spade.") :], _SPADE)
            site = self.sites.index(path) if path in self.sites else None
            return None if renamed is None or site is None else [("adapter", f"spades.{site}.{renamed}", _same)]
        renamed = _rename(inner, _LDM_RESBLOCK)
        return None if renamed is None else [("unet", f"{path}.{renamed}", _same)]

    def _unet_block(self, rest: str) -> tuple[str, str, str] | None:
        """('down_blocks.1.resnets.0', 'resnet' | 'attention' | 'sampler', key inside) for a block key."""
        span = self.layers + 1
        if rest.startswith("middle_block."):
            index, _, inner = rest[len("middle_block.") :].partition(".")
            names = {
                "0": ("mid_block.resnets.0", "resnet"),
                "1": ("mid_block.attentions.0", "attention"),
                "2": ("mid_block.resnets.1", "resnet"),
            }
            return (*names[index], inner) if index in names else None
        for prefix, attention in (("input_blocks.", self.down_attention), ("output_blocks.", self.up_attention)):
            if not rest.startswith(prefix):
                continue
            parsed = _split_block(rest[len(prefix) :])
            if parsed is None:
                return None
            index, sub, inner = parsed
            down = prefix == "input_blocks."
            level, j = divmod(index - 1, span) if down else divmod(index, span)
            if level >= len(attention) or index < (1 if down else 0):
                return None
            blocks = "down_blocks" if down else "up_blocks"
            if down and j == self.layers:
                return (f"{blocks}.{level}.downsamplers.0", "sampler", inner) if sub == 0 else None
            if sub == 0:
                return (f"{blocks}.{level}.resnets.{j}", "resnet", inner)
            if sub == 1 and attention[level]:
                return (f"{blocks}.{level}.attentions.{j}", "attention", inner)
            if not down and j == self.layers and sub == (2 if attention[level] else 1):
                return (f"{blocks}.{level}.upsamplers.0", "sampler", inner)
            return None
        return None

    # -- the time-aware encoder (structcond_stage_model.*) ---------------------------------------------------
    def encoder(self, rest: str) -> list[Placement] | None:
        fixed = {
            "time_embed.0.": "time_embedding.linear_1.",
            "time_embed.2.": "time_embedding.linear_2.",
            "input_blocks.0.0.": "conv_in.",
        }
        for old, new in fixed.items():
            if rest.startswith(old):
                return [("adapter", "encoder." + new + rest[len(old) :], _same)]
        if rest.startswith("fea_tran."):
            index, _, inner = rest[len("fea_tran.") :].partition(".")
            renamed = _rename(inner, _LDM_RESBLOCK)
            return None if renamed is None else [("adapter", f"encoder.feature_heads.{index}.{renamed}", _same)]
        if rest.startswith("middle_block."):
            index, _, inner = rest[len("middle_block.") :].partition(".")
            path = {"0": "mid_resnets.0", "1": "mid_attention", "2": "mid_resnets.1"}.get(index)
            return None if path is None else self._encoder_inner(path, index == "1", inner)
        if rest.startswith("input_blocks."):
            parsed = _split_block(rest[len("input_blocks.") :])
            if parsed is None or parsed[0] < 1:
                return None
            level, j = divmod(parsed[0] - 1, self.encoder_layers + 1)
            if j == self.encoder_layers:
                inner = parsed[2]
                ok = parsed[1] == 0 and inner.startswith("op.")
                return [("adapter", f"encoder.levels.{level}.downsample.conv.{inner[3:]}", _same)] if ok else None
            if parsed[1] == 0:
                return self._encoder_inner(f"levels.{level}.resnets.{j}", False, parsed[2])
            if parsed[1] == 1:
                return self._encoder_inner(f"levels.{level}.attentions.{j}", True, parsed[2])
        return None

    def _encoder_inner(self, path: str, attention: bool, inner: str) -> list[Placement] | None:
        target = f"encoder.{path}."
        if not attention:
            renamed = _rename(inner, _LDM_RESBLOCK)
            return None if renamed is None else [("adapter", target + renamed, _same)]
        name, _, param = inner.rpartition(".")
        if name == "norm":
            return [("adapter", f"{target}group_norm.{param}", _same)]
        if name == "proj_out":
            return [("adapter", f"{target}to_out.0.{param}", _squeeze_1x1)]
        if name == "qkv":
            return [("adapter", f"{target}to_{x}.{param}", _legacy_qkv(i, self.heads)) for i, x in enumerate("qkv")]
        return None

    # -- the VAE (first_stage_model.*, or the CFW file) ------------------------------------------------------
    def vae(self, rest: str, module: str = "vae") -> list[Placement] | None:
        for old, new in (
            ("encoder.norm_out.", "encoder.conv_norm_out."),
            ("decoder.norm_out.", "decoder.conv_norm_out."),
        ):
            if rest.startswith(old):
                return [(module, new + rest[len(old) :], _same)]
        if re.match(
            r"(quant_conv|post_quant_conv|encoder\.conv_in|encoder\.conv_out|decoder\.conv_in|decoder\.conv_out)\.",
            rest,
        ):
            return [(module, rest, _same)]
        match = re.match(r"(encoder|decoder)\.mid\.(block_1|block_2|attn_1)\.(.+)", rest)
        if match:
            part, block, inner = match.groups()
            if block != "attn_1":
                renamed = _rename(inner, _VAE_RESBLOCK)
                index = 0 if block == "block_1" else 1
                return None if renamed is None else [(module, f"{part}.mid_block.resnets.{index}.{renamed}", _same)]
            name, _, param = inner.rpartition(".")
            target = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}.get(name)
            transform = _same if name == "norm" else _squeeze_1x1
            return None if target is None else [(module, f"{part}.mid_block.attentions.0.{target}.{param}", transform)]
        match = re.match(r"(encoder\.down|decoder\.up)\.(\d+)\.(block\.(\d+)|downsample|upsample)\.(.+)", rest)
        if match:
            part, level, what, j, inner = match.groups()
            level = int(level)
            if part == "decoder.up":
                if level >= self.vae_levels:
                    return None
                path = f"decoder.up_blocks.{self.vae_levels - 1 - level}"
            else:
                path = f"encoder.down_blocks.{level}"
            if what.startswith("block"):
                renamed = _rename(inner, _VAE_RESBLOCK)
                return None if renamed is None else [(module, f"{path}.resnets.{j}.{renamed}", _same)]
            sampler = "downsamplers" if what == "downsample" else "upsamplers"
            return [(module, f"{path}.{sampler}.0.{inner}", _same)] if inner.startswith("conv.") else None
        match = re.match(r"decoder\.fusion_layer_(\d+)\.(encode_enc_1|encode_enc_2|encode_enc_3)\.(.+)", rest)
        if match:
            level, part, inner = match.groups()
            if part == "encode_enc_2":
                dense = re.fullmatch(r"(\d+)\.rdb([123])\.conv([1-5])\.(weight|bias)", inner)
                if dense is None:
                    return None
                k, block, conv, param = dense.groups()
                path = f"fuse.{level}.rrdbs.{k}.blocks.{int(block) - 1}.convs.{int(conv) - 1}.{param}"
                return [("cfw", path, _same)]
            renamed = _rename(inner, _VAE_RESBLOCK)
            name = "merge" if part == "encode_enc_1" else "out"
            return None if renamed is None else [("cfw", f"fuse.{level}.{name}.{renamed}", _same)]
        return None

    # -- the OpenCLIP text tower (cond_stage_model.model.*) ------------------------------------------------
    def text(self, rest: str) -> list[Placement] | None:
        fixed = {
            "token_embedding.weight": "embeddings.token_embedding.weight",
            "positional_embedding": "embeddings.position_embedding.weight",
            "ln_final.weight": "final_layer_norm.weight",
            "ln_final.bias": "final_layer_norm.bias",
        }
        if rest in fixed:
            return [("text_encoder", self.text_root + fixed[rest], _same)]
        if rest in ("text_projection", "logit_scale"):
            return []  # unused: SD 2.x conditions on the penultimate layer's states, never projected
        match = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias|in_proj_weight|in_proj_bias)", rest)
        if match is None:
            return None
        layer, name, param = int(match[1]), match[2], match[3]
        if layer >= self.text_layers:
            return []  # the last layer: past the penultimate one SD 2.x reads
        target = f"{self.text_root}encoder.layers.{layer}."
        if name == "attn" and param.startswith("in_proj"):
            kind = param[len("in_proj_") :]
            return [("text_encoder", f"{target}self_attn.{x}_proj.{kind}", _thirds(i)) for i, x in enumerate("qkv")]
        renamed = {
            "ln_1": "layer_norm1",
            "ln_2": "layer_norm2",
            "attn.out_proj": "self_attn.out_proj",
            "mlp.c_fc": "mlp.fc1",
            "mlp.c_proj": "mlp.fc2",
        }.get(name)
        return None if renamed is None else [("text_encoder", f"{target}{renamed}.{param}", _same)]

    def place(self, key: str) -> list[Placement] | None:
        """Where an official key goes ([] = dropped on purpose, None = not part of any StableSR layout)."""
        if key in SCHEDULE_BUFFERS or key.startswith("loss."):
            return []
        for prefix, route in (
            ("model.diffusion_model.", self.unet),
            ("structcond_stage_model.", self.encoder),
            ("first_stage_model.", self.vae),
            (TEXT_PREFIX, self.text),
        ):
            if key.startswith(prefix):
                return route(key[len(prefix) :])
        if key.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")):
            return self.vae(key, module="cfw_vae" if not key.startswith("decoder.fusion_layer_") else "cfw")
        return None


def layout_of(keys: list[str] | set[str]) -> str:
    """'full', 'adapter' or 'cfw' from the keys alone; UsageError if none fits."""
    keys = set(keys)
    if any(k.startswith("decoder.fusion_layer_") for k in keys):
        return "cfw"
    if any(k.startswith("structcond_stage_model.") for k in keys):  # a plain SD checkpoint has none
        if any(k.startswith("model.diffusion_model.") and ".spade." not in k for k in keys):
            return "full"
        if any(".spade." in k for k in keys):
            return "adapter"
    raise UsageError("not a StableSR checkpoint: no SPADE/structcond keys and no CFW fusion layers")


def map_state_dict(
    state: Mapping[str, torch.Tensor], modules: Mapping[str, nn.Module], key_map: StableSRKeyMap, source: str
) -> dict[str, dict[str, torch.Tensor]]:
    """Official `state` -> one state dict per target module, checked key by key against `modules`.

    Raises UsageError naming `source` and the first key that has no place, does not fit, or is missing.
    """
    targets = {name: module.state_dict() for name, module in modules.items()}
    mapped: dict[str, dict[str, torch.Tensor]] = {name: {} for name in modules}
    origin: dict[tuple[str, str], str] = {}
    for key, tensor in state.items():
        placements = key_map.place(key)
        if placements is None:
            raise UsageError(f"{source}: key '{key}' is not part of the StableSR layout (wrong file or version?)")
        for module, target_key, transform in placements:
            if module not in targets:
                raise UsageError(f"{source}: key '{key}' belongs to a {module} that this load does not take")
            expected = targets[module].get(target_key)
            if expected is None:
                raise UsageError(f"{source}: key '{key}' has no place in studio's {module} ({target_key})")
            value = transform(tensor)
            if tuple(value.shape) != tuple(expected.shape):
                raise UsageError(
                    f"{source}: key '{key}' has shape {list(tensor.shape)}, which does not fit "
                    f"{module}.{target_key} {list(expected.shape)}"
                )
            if expected.is_floating_point() and value.dtype != expected.dtype:
                value = value.to(expected.dtype)  # one tensor at a time: the file is never held converted whole
            if (module, target_key) in origin:
                raise UsageError(f"{source}: keys '{origin[module, target_key]}' and '{key}' both fill {target_key}")
            origin[module, target_key] = key
            mapped[module][target_key] = value
    for module, expected in targets.items():
        for target_key in expected:
            if target_key not in mapped[module] and not _derived(target_key):
                raise UsageError(f"{source}: no key fills {module}.{target_key} (a truncated or different file?)")
    return mapped


def _derived(target_key: str) -> bool:
    """Buffers the target computes itself rather than reads (transformers' position ids)."""
    return target_key.endswith("position_ids")
