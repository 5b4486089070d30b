"""Degradation-guided LoRA (Zhang et al. 2024, "Degradation-Guided One-Step Image Super-Resolution with
Diffusion Priors"; written from the paper and ArcticHare105/S3Diff's code).

S3Diff puts LoRA on the UNet (rank 32) and on the VAE encoder (rank 16) and steers both with the input's
degradation scores: the scores go through a Fourier embedding (sin and cos of 2 pi s w for 64 fixed
frequencies w, per score), an MLP per network, and are joined with a learned embedding of each block
(10 UNet blocks: 4 down, mid, 4 up, the rest; 6 VAE-encoder blocks: 4 down, mid, the rest) into one
r x r matrix M per block. In every LoRA layer of that block M sits between A and B: y = W x + s B (M^T (A x)).

Because A has no bias, M^T (A x) = (M^T A) x: studio folds M into A once per image (`LoraModulation.apply`)
and runs PEFT's ordinary LoRA layers, which also lets PEFT merge the LoRA into the base weights. The
reference's form, M inserted after A (`LoraModulation.insert`), stays for tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

FREQUENCIES = 64
"""Fourier frequencies per score (the file's `w`)."""
DEGRADATION_HIDDEN = 256
BLOCK_EMBEDDING = 64
BLOCK_HIDDEN = 64
UNET_BLOCKS = 10
VAE_BLOCKS = 6
SCORES = 2


def unet_block(name: str) -> int:
    """The UNet block (0-9) a LoRA layer belongs to: down blocks 0-3, mid 4, up blocks 5-8, the rest 9."""
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "mid_block":
        return 4
    if parts[0] == "up_blocks":
        return int(parts[1]) + 5
    return UNET_BLOCKS - 1


def vae_block(name: str) -> int:
    """The VAE-encoder block (0-5) of a LoRA layer named from the VAE ('encoder.down_blocks.2...'):
    down blocks 0-3, mid 4, the rest (conv_in, conv_out) 5."""
    parts = name.split(".")
    if parts[1] == "down_blocks":
        return int(parts[2])
    if parts[1] == "mid_block":
        return VAE_BLOCKS - 2
    return VAE_BLOCKS - 1


class BlockModulator(nn.Module):
    """One network's matrices: degradation MLP + block-embedding MLP -> one r x r matrix per block."""

    def __init__(self, rank: int, blocks: int) -> None:
        super().__init__()
        self.rank = rank
        self.degradation_mlp = nn.Sequential(nn.Linear(2 * SCORES * FREQUENCIES, DEGRADATION_HIDDEN), nn.ReLU(True))
        self.block_mlp = nn.Sequential(nn.Linear(BLOCK_EMBEDDING, BLOCK_HIDDEN), nn.ReLU(True))
        self.fuse = nn.Linear(DEGRADATION_HIDDEN + BLOCK_HIDDEN, rank * rank)
        self.block_embeddings = nn.Embedding(blocks, BLOCK_EMBEDDING)

    def forward(self, fourier: torch.Tensor) -> torch.Tensor:
        """(B, 4 * frequencies) -> (B, blocks, r, r)."""
        degradation = self.degradation_mlp(fourier)
        blocks = self.block_mlp(self.block_embeddings.weight)
        batch, count = degradation.shape[0], blocks.shape[0]
        joined = torch.cat(
            [degradation[:, None].expand(batch, count, -1), blocks[None].expand(batch, count, -1)], dim=-1
        )
        return self.fuse(joined).reshape(batch, count, self.rank, self.rank)


class DegradationGuidance(nn.Module):
    """Degradation scores (B, 2) -> the UNet's and the VAE encoder's per-block matrices."""

    def __init__(self, rank_unet: int, rank_vae: int) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.zeros(FREQUENCIES))
        self.unet = BlockModulator(rank_unet, UNET_BLOCKS)
        self.vae = BlockModulator(rank_vae, VAE_BLOCKS)

    def fourier(self, scores: torch.Tensor) -> torch.Tensor:
        """[sin, cos] of 2 pi s w for each score s, the scores' embeddings side by side."""
        angles = scores[..., None] * self.frequencies * (2 * math.pi)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(1)

    def forward(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedded = self.fourier(scores)
        return self.unet(embedded), self.vae(embedded)


class LoraModulation:
    """The PEFT LoRA layers of one network under one adapter name, each with its block and trained A."""

    def __init__(self, model: nn.Module, adapter: str, block_of: Callable[[str], int]) -> None:
        self.adapter = adapter
        self.layers = [
            (name, module, block_of(name))
            for name, module in model.named_modules()
            if adapter in getattr(module, "lora_A", {})
        ]
        self.trained = {name: module.lora_A[adapter].weight.detach().clone() for name, module, _ in self.layers}
        self._base: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def apply(self, matrices: torch.Tensor) -> None:
        """Fold each block's matrix into its layers' A: A <- M^T A (`matrices`: (blocks, r, r), one image).
        Merged layers are first restored to their exact base weights (merge again afterwards)."""
        self.unmerge()
        for name, module, block in self.layers:
            weight = _stored_weight(module.lora_A[self.adapter])
            trained = self.trained[name]
            exact = torch.promote_types(trained.dtype, torch.float32)
            folded = torch.einsum("kr,k...->r...", matrices[block].to(trained.device, exact), trained.to(exact))
            weight.copy_(folded.to(weight.dtype))

    def merge(self) -> None:
        """Merge the current (modulated) LoRA into the base weights for speed; the exact base weights are
        kept on the host so the next image starts from them, not from a subtraction."""
        for name, module, _ in self.layers:
            base = module.get_base_layer().weight
            self._base.setdefault(name, base.detach().to("cpu", copy=True))
            module.merge(adapter_names=[self.adapter])

    @torch.no_grad()
    def unmerge(self) -> None:
        for name, module, _ in self.layers:
            if module.merged:
                module.unmerge()
                module.get_base_layer().weight.copy_(self._base[name])

    @contextmanager
    def insert(self, matrices: torch.Tensor) -> Iterator[None]:
        """The reference's unfused form, for tests: M applied to A's output (channel dim 1 for convolutions,
        last for linear layers) with the trained A in place."""
        handles: list[Any] = []
        for name, module, block in self.layers:
            lora_a = module.lora_A[self.adapter]
            with torch.no_grad():
                lora_a.weight.copy_(self.trained[name])
            handles.append(lora_a.register_forward_hook(_mixer(matrices[block], conv=lora_a.weight.dim() == 4)))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _stored_weight(layer: nn.Module) -> torch.Tensor:
    """The tensor holding a layer's weight: the parameter, or accelerate's CPU copy when the layer is
    offloaded layer by layer (its parameter is then an empty placeholder on the meta device)."""
    hook = getattr(layer, "_hf_hook", None)
    if layer.weight.device.type == "meta" and getattr(hook, "weights_map", None) is not None:
        return hook.weights_map["weight"]
    return layer.weight


def _mixer(matrix: torch.Tensor, conv: bool) -> Callable[..., torch.Tensor]:
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        m = matrix.to(output.dtype)
        return torch.einsum("bkhw,kr->brhw", output, m) if conv else torch.einsum("...k,kr->...r", output, m)

    return hook
