"""The key table of S3Diff's official files, and where each entry lands in studio's modules.

`s3diff.pkl` (hub `zhangap/S3Diff`) is one torch-saved dict, written by `S3Diff.save_model` in the authors'
`src/s3diff_tile.py` (the same in `src/s3diff.py`):

entry                                 holds                                          -> studio
rank_unet, rank_vae                   LoRA ranks (32, 16)                               LoraConfig(r=...)
unet_lora_target_modules              PEFT targets: to_q/k/v, to_out.0, conv, conv1,    adapter `default`
                                      conv2, conv_shortcut, conv_out, proj_in/out,      on the UNet
                                      ff.net.0.proj, ff.net.2
vae_lora_target_modules               PEFT regex over the encoder's convs and attention adapter `vae_skip`
state_dict_unet                       UNet keys holding 'lora' or 'conv_in': LoRA A/B   unet.*
                                      and the retrained conv_in weight and bias
state_dict_vae                        VAE keys holding 'lora' (or 'skip_conv')          vae.*
state_dict_{unet,vae}_de_mlp          0.weight, 0.bias: Linear(256 -> 256)              guidance.*.degradation_mlp.*
state_dict_{unet,vae}_block_mlp       0.weight, 0.bias: Linear(64 -> 64)                guidance.{unet,vae}.block_mlp.*
state_dict_{unet,vae}_fuse_mlp        weight, bias: Linear(320 -> r * r)                guidance.{unet,vae}.fuse.*
state_embeddings/state_dict_{unet,vae}_block/weight: Embedding(10 or 6, 64)            guidance.*.block_embeddings.*
w                                     the 64 Fourier frequencies (a Parameter)          guidance.frequencies

The LoRA scale is PEFT's default lora_alpha / r (8 / 32 for the UNet, 8 / 16 for the VAE), as the authors'
`LoraConfig` leaves lora_alpha unset. The degradation estimator is a separate file, `de_net.pth`
(`assets/mm-realsr/` in the authors' repository): a plain state dict of DEResNet (`conv_first.*`, `body.*`,
`fc_degree.*`), which lands on `estimator.*` unchanged.

Official names are written `entry/key` (`state_dict_unet/conv_in.weight`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNET_ADAPTER = "default"
VAE_ADAPTER = "vae_skip"
LORA_ALPHA = 8
"""PEFT's default lora_alpha, which the authors' LoraConfig does not set."""

CONFIG_ENTRIES = ("rank_unet", "rank_vae", "unet_lora_target_modules", "vae_lora_target_modules")
"""Entries that configure the LoRA rather than hold tensors."""
TENSOR_ENTRIES: dict[tuple[str, ...], str] = {
    ("state_dict_unet",): "unet.",
    ("state_dict_vae",): "vae.",
    ("state_dict_unet_de_mlp",): "guidance.unet.degradation_mlp.",
    ("state_dict_vae_de_mlp",): "guidance.vae.degradation_mlp.",
    ("state_dict_unet_block_mlp",): "guidance.unet.block_mlp.",
    ("state_dict_vae_block_mlp",): "guidance.vae.block_mlp.",
    ("state_dict_unet_fuse_mlp",): "guidance.unet.fuse.",
    ("state_dict_vae_fuse_mlp",): "guidance.vae.fuse.",
    ("state_embeddings", "state_dict_unet_block"): "guidance.unet.block_embeddings.",
    ("state_embeddings", "state_dict_vae_block"): "guidance.vae.block_embeddings.",
}
"""Official dict path -> prefix of studio's names for the tensors inside it."""
SINGLE_TENSORS = {"w": "guidance.frequencies"}
ESTIMATOR_PREFIX = "estimator."


class LayoutError(ValueError):
    """The file is not in S3Diff's layout; the message names the first entry or key that does not fit."""


def official_name(path: tuple[str, ...], key: str = "") -> str:
    return "/".join((*path, key)) if key else "/".join(path)


def to_studio(official: Mapping[str, Any]) -> dict[str, Any]:
    """The file's tensors under studio's names (`unet.*`, `vae.*`, `guidance.*`); raises `LayoutError` for
    a missing entry, an entry of the wrong kind, or an entry the table does not know."""
    known = set(CONFIG_ENTRIES) | set(SINGLE_TENSORS) | {path[0] for path in TENSOR_ENTRIES}
    for entry in (*CONFIG_ENTRIES, *SINGLE_TENSORS, *(path[0] for path in TENSOR_ENTRIES)):
        if entry not in official:
            raise LayoutError(f"no '{entry}' entry")
    if extra := sorted(set(official) - known):
        raise LayoutError(f"entry '{extra[0]}' is not part of S3Diff's layout")
    mapped: dict[str, Any] = {studio: official[entry] for entry, studio in SINGLE_TENSORS.items()}
    for path, prefix in TENSOR_ENTRIES.items():
        group = _group(official, path)
        for key, tensor in group.items():
            if not hasattr(tensor, "shape"):
                raise LayoutError(f"'{official_name(path, key)}' is a {type(tensor).__name__}, not a tensor")
            mapped[prefix + key] = tensor
    return mapped


def _group(official: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    group: Any = official
    for depth, part in enumerate(path):
        if not isinstance(group, Mapping) or part not in group:
            raise LayoutError(f"no '{official_name(path[: depth + 1])}' entry")
        group = group[part]
    if not isinstance(group, Mapping):
        raise LayoutError(f"'{official_name(path)}' is a {type(group).__name__}, not a dict of tensors")
    return group


def to_official(studio: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `to_studio`: studio's tensors and the LoRA config entries as the authors save them
    (for tests and fixtures; the parity check writes its file with the authors' own `save_model`)."""
    official: dict[str, Any] = {entry: config[entry] for entry in CONFIG_ENTRIES}
    for entry, name in SINGLE_TENSORS.items():
        official[entry] = studio[name]
    for path, prefix in TENSOR_ENTRIES.items():
        group = official
        for part in path[:-1]:
            group = group.setdefault(part, {})
        group[path[-1]] = {key[len(prefix) :]: value for key, value in studio.items() if key.startswith(prefix)}
    return official


def studio_to_official_name(name: str) -> str:
    """Where a studio key came from in the file, for messages ('unet.x' -> 'state_dict_unet/x')."""
    for entry, studio in SINGLE_TENSORS.items():
        if name == studio:
            return entry
    for path, prefix in sorted(TENSOR_ENTRIES.items(), key=lambda item: -len(item[1])):
        if name.startswith(prefix):
            return official_name(path, name[len(prefix) :])
    if name.startswith(ESTIMATOR_PREFIX):
        return "de_net/" + name[len(ESTIMATOR_PREFIX) :]
    return name
