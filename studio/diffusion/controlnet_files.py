"""ControlNets given as one file (.safetensors/.pth/.ckpt/.bin), loaded offline.

diffusers' `from_single_file` fetches a ControlNet's config from the hub; a ControlNet is a copy of its base
UNet's encoder, so the architecture here comes from the base model's UNet (`ControlNetModel.from_unet`) and
only the control-image embedding's widths from the file. Weights load strictly: diffusers' layout as is,
the original lllyasviel/ldm layout (`control_model.input_hint_block.*`, `control_model.zero_convs.*`, or the
same without the prefix) through diffusers' own converter. A ControlNet made for another base (SDXL's on
SD 1.5) fails in one line naming the first key that does not fit.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

DIFFUSERS_MARKERS = ("controlnet_cond_embedding.", "controlnet_down_blocks.")
ORIGINAL_MARKERS = ("input_hint_block.", "zero_convs.")
ORIGINAL_PREFIX = "control_model."
EMBEDDING = "controlnet_cond_embedding."
HINT = "was it made for another base model (SD 1.x, 2.x or SDXL)?"


def controlnet_layout(keys: Collection[str]) -> str | None:
    """'diffusers' or 'original' when the key names are a ControlNet's, else None."""

    def has_all(markers: tuple[str, ...], prefix: str = "") -> bool:
        return all(any(key.startswith(prefix + marker) for key in keys) for marker in markers)

    if has_all(DIFFUSERS_MARKERS):
        return "diffusers"
    if has_all(ORIGINAL_MARKERS, ORIGINAL_PREFIX) or has_all(ORIGINAL_MARKERS):
        return "original"
    return None


def load_controlnet(ref: str, unet: Any, weights_name: str, dtype: torch.dtype) -> Any:
    """A ControlNetModel in `dtype` from a hub id or diffusers folder (diffusers' loader) or a single file."""
    from diffusers import ControlNetModel

    from studio.diffusion import loading

    source = loading.resolve_source(ref)
    if source.kind == "file":
        return load_controlnet_file(source.ref, unet, weights_name, dtype)
    return loading.load_model(ControlNetModel, source, weights_name, dtype).eval()


def load_controlnet_file(path: str | Path, unet: Any, weights_name: str, dtype: torch.dtype) -> Any:
    """A ControlNetModel shaped like `unet` (see the module docstring), in `dtype`, with the file's weights."""
    import torch
    from diffusers import ControlNetModel

    from studio.diffusion import loading

    origin = str(path)
    state = loading.load_weights_file(path, weights_name)
    layout = controlnet_layout(state)
    if layout is None:
        raise ModelLoadError(f"{origin}: not a ControlNet (no controlnet_cond_embedding/input_hint_block keys)")
    if layout == "original":
        state = from_original(state, unet.config, origin)
    conditioning_channels, widths = embedding_widths(state, origin)
    with torch.device("meta"):
        controlnet = ControlNetModel.from_unet(
            unet,
            conditioning_embedding_out_channels=widths,
            conditioning_channels=conditioning_channels,
            load_weights_from_unet=False,
        )
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    loading.load_exactly(controlnet, state, origin, "ControlNet", HINT)
    loading.check_dtype(controlnet, dtype, origin)
    return controlnet.eval()


def from_original(state: dict[str, torch.Tensor], unet_config: Any, origin: str) -> dict[str, torch.Tensor]:
    """The original layout in diffusers' names, by diffusers' own converter and tables (its converter leaves
    out SDXL's `label_emb`, which its table maps). Every ControlNet key of the file must be used; keys outside
    `control_model.` in a prefixed file (the SD weights in a ControlNet 1.0 file) are the base's, left out."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, convert_controlnet_checkpoint

    config = dict(unet_config)
    prefixed = any(key.startswith(ORIGINAL_PREFIX + ORIGINAL_MARKERS[0]) for key in state)
    start = len(ORIGINAL_PREFIX) if prefixed else 0
    own = {key[start:]: value for key, value in state.items() if key.startswith(ORIGINAL_PREFIX) or not prefixed}
    converted = {k: v for k, v in convert_controlnet_checkpoint(own, config).items() if v is not None}
    for embedding in ("class_embed_type", "addition_embed_type"):
        if config.get(embedding):
            table = DIFFUSERS_TO_LDM_MAPPING["controlnet"][embedding]
            converted.update({new: own[old] for new, old in table.items() if old in own})
    used = {id(value) for value in converted.values()}
    unused = [key for key, value in own.items() if id(value) not in used]
    if unused:
        raise ModelLoadError(
            f"{origin}: key '{ORIGINAL_PREFIX[:start]}{unused[0]}' (and {len(unused) - 1} more) has no place in "
            f"a ControlNet for this base; {HINT}"
        )
    return converted


def embedding_widths(state: dict[str, torch.Tensor], origin: str) -> tuple[int, tuple[int, ...]]:
    """(control image channels, widths of the control-image embedding's levels) read from its weights:
    conv_in, then every second block (the strided ones) opens the next level."""
    conv_in = state.get(EMBEDDING + "conv_in.weight")
    if conv_in is None:
        raise ModelLoadError(f"{origin}: missing ControlNet key for '{EMBEDDING}conv_in.weight'; {HINT}")
    widths = [int(conv_in.shape[0])]
    index = 1
    while (block := state.get(f"{EMBEDDING}blocks.{index}.weight")) is not None:
        widths.append(int(block.shape[0]))
        index += 2
    return int(conv_in.shape[1]), tuple(widths)
