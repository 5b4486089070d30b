"""Out of memory inside a diffusion engine: the attempts to make with smaller latent and VAE tiles.

How an engine uses it: build the list of attempts with `tile_ladder(unet_tile, vae_tile, h, w)` and run
`run_shrinking_tiles(lambda tiles: ..., attempts, device, name)`. Each out-of-memory frees the cache and
tries the next, halved tiles (an untiled pass counts as one tile of the latent's longer side); the notes
say which tiles ran out. The ladder itself is the device layer's (`studio.devices.run_shrinking`): when
even the smallest tiles run out, `OutOfMemory` is raised and the runner falls back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from studio.devices import run_shrinking

if TYPE_CHECKING:
    import torch

MIN_TILE = 16
"""Latent pixels: below this the UNet's deepest level has nothing left to see."""
Result = TypeVar("Result")
Tiles = tuple[int, int]
"""(UNet tile, VAE tile) in latent pixels; 0: untiled."""


def tile_ladder(unet_tile: int, vae_tile: int, height: int, width: int) -> list[Tiles]:
    """(UNet tile, VAE tile) attempts in latent pixels: as asked, then both halved down to MIN_TILE."""
    attempts = [(unet_tile, vae_tile)]
    unet, vae = unet_tile or max(height, width), vae_tile or max(height, width)
    while unet > MIN_TILE or vae > MIN_TILE:
        unet, vae = max(MIN_TILE, unet // 2), max(MIN_TILE, vae // 2)
        attempts.append((unet, vae))
    return attempts


def run_shrinking_tiles(
    run: Callable[[Tiles], Result], attempts: list[Tiles], device: torch.device, name: str
) -> tuple[Result, list[str]]:
    """`run((unet_tile, vae_tile))` on each attempt until one fits in memory; (its result, notes on retries)."""
    advice = "use a smaller image, --offload sequential or another engine"
    result, _, notes = run_shrinking(run, attempts, device, name, _tiles, advice)
    return result, notes


def _tiles(tiles: Tiles) -> str:
    unet_tile, vae_tile = tiles
    latent = f"{unet_tile} px latent tiles" if unet_tile else "the whole latent"
    return f"{latent}, VAE tile {vae_tile or 'off'}"
