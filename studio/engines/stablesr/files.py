"""Loading official StableSR files onto diffusers components, strictly.

`encoder_config_from_keys` reads the time-aware encoder's shape from the keys (so toy files load as the real
ones do); `apply_file` puts one file's tensors (read by `loading.load_weights_file`) onto the components and
returns what the file was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.engines.stablesr.keys import (
    StableSRKeyMap,
    layout_of,
    map_state_dict,
)
from studio.engines.stablesr.networks import (
    CFWFusion,
    EncoderConfig,
    StableSRAdapter,
)
from studio.errors import UsageError


def encoder_config_from_keys(state: Mapping[str, Any]) -> EncoderConfig:
    """The time-aware encoder's widths, depth and attention levels, read from its weight shapes."""
    prefix = "structcond_stage_model."
    conv_in = state.get(prefix + "input_blocks.0.0.weight")
    if conv_in is None:
        raise UsageError(f"no '{prefix}input_blocks.0.0.weight': not a StableSR adapter")
    channels, in_channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    levels: list[list[tuple[int, bool]]] = [[]]
    index = 1
    while any(k.startswith(f"{prefix}input_blocks.{index}.") for k in state):
        if f"{prefix}input_blocks.{index}.0.op.weight" in state:
            levels.append([])
        else:
            width = int(state[f"{prefix}input_blocks.{index}.0.out_layers.3.weight"].shape[0])
            levels[-1].append((width, f"{prefix}input_blocks.{index}.1.qkv.weight" in state))
        index += 1
    heads = state[prefix + "fea_tran.0.out_layers.3.weight"]
    spade = next((v for k, v in state.items() if k.endswith(".spade.mlp_shared.0.weight")), None)
    return EncoderConfig(
        in_channels=in_channels,
        channels=channels,
        channel_mult=tuple(level[0][0] // channels for level in levels),
        layers_per_level=len(levels[0]),
        attention_levels=tuple(i for i, level in enumerate(levels) if any(attn for _, attn in level)),
        out_channels=int(heads.shape[0]),
        spade_hidden=int(spade.shape[0]) if spade is not None else 128,
    )


@dataclass
class LoadedFile:
    """What one official file contributed: its layout and the modules it created."""

    path: Path
    layout: str  # full | adapter | cfw
    adapter: StableSRAdapter | None = None
    cfw_vae: Any = None
    cfw: CFWFusion | None = None


def apply_file(
    path: Path, weights_name: str, unet: Any, vae: Any, text_encoder: Any, state: Mapping[str, Any] | None = None
) -> LoadedFile:
    """Load one official file: a full model replaces the base's UNet/VAE/text weights and yields the adapter;
    an adapter file yields the adapter; a CFW file yields the CFW autoencoder and fusion layers.

    `state` defaults to the file's memory-mapped tensors, each converted to its module's dtype as it is
    placed; `check_file` passes meta tensors from the file's index instead (same checks, no data read)."""
    import torch
    from diffusers import AutoencoderKL

    from studio.diffusion.loading import load_weights_file

    state = load_weights_file(path, weights_name) if state is None else state
    layout = layout_of(state)
    if layout == "cfw":
        with torch.device("meta"):
            cfw_vae = torch.nn.Module.to(AutoencoderKL.from_config(vae.config), vae.dtype)  # no fp32-modules notice
            fusion = CFWFusion.for_vae(cfw_vae)
        modules = {"cfw_vae": cfw_vae, "cfw": fusion}
        _load(path, state, modules, StableSRKeyMap(None, EncoderConfig(), cfw_vae))
        return LoadedFile(path, layout, cfw_vae=cfw_vae.eval(), cfw=fusion.eval())
    config = encoder_config_from_keys(state)
    with torch.device("meta"):
        adapter = StableSRAdapter.for_unet(unet, config).to(unet.dtype)
    modules: dict[str, Any] = {"adapter": adapter}
    if layout == "full":
        modules.update(unet=unet, vae=vae, text_encoder=text_encoder)
    _load(path, state, modules, StableSRKeyMap(unet, config, vae, text_encoder))
    return LoadedFile(path, layout, adapter=adapter.eval())


def check_file(path: Path, weights_name: str, unet: Any, vae: Any, text_encoder: Any) -> str:
    """Every key and shape of an official file checked against (meta) modules as `apply_file` would place
    them, from the file's index alone; returns the layout. Raises the one line a real load would."""
    from studio.diffusion.loading import weights_file_index
    from studio.weights.index import meta_state

    state = meta_state(weights_file_index(path, weights_name))
    return apply_file(path, weights_name, unet, vae, text_encoder, state).layout


def _load(path: Path, state: Mapping[str, Any], modules: dict[str, Any], key_map: StableSRKeyMap) -> None:
    for name, mapped in map_state_dict(state, modules, key_map, str(path)).items():
        missing, _ = modules[name].load_state_dict(mapped, strict=False, assign=True)
        left = [k for k in missing if not re.search(r"position_ids$", k)]
        if left:
            raise UsageError(f"{path}: no key fills {name}.{left[0]}")
