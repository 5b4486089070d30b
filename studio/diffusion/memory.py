"""Out of memory inside a diffusion engine: retry with smaller latent and VAE tiles, then give up cleanly.

How an engine uses it: build the list of attempts with `tile_ladder(unet_tile, vae_tile, h, w)` and run
`run_shrinking_tiles(lambda unet_tile, vae_tile: ..., attempts, device, name)`. Each out-of-memory frees
the cache and tries the next, halved tiles (an untiled pass counts as one tile of the latent's longer
side); the notes say which tiles ran out. When even the smallest tiles run out, `OutOfMemory` (a
StudioError) is raised: the runner treats it like an unavailable engine and falls back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from studio.devices import empty_cache, is_out_of_memory
from studio.errors import OutOfMemory
from studio.messages import notice

if TYPE_CHECKING:
    import torch

MIN_TILE = 16
"""Latent pixels: below this the UNet's deepest level has nothing left to see."""
Result = TypeVar("Result")


def tile_ladder(unet_tile: int, vae_tile: int, height: int, width: int) -> list[tuple[int, int]]:
    """(UNet tile, VAE tile) attempts in latent pixels: as asked, then both halved down to MIN_TILE."""
    attempts = [(unet_tile, vae_tile)]
    unet, vae = unet_tile or max(height, width), vae_tile or max(height, width)
    while unet > MIN_TILE or vae > MIN_TILE:
        unet, vae = max(MIN_TILE, unet // 2), max(MIN_TILE, vae // 2)
        attempts.append((unet, vae))
    return attempts


def run_shrinking_tiles(
    run: Callable[[int, int], Result],
    attempts: list[tuple[int, int]],
    device: torch.device,
    name: str,
) -> tuple[Result, list[str]]:
    """`run(unet_tile, vae_tile)` on each attempt until one fits in memory; (its result, notes on retries)."""
    notes: list[str] = []
    for index, (unet_tile, vae_tile) in enumerate(attempts):
        try:
            return run(unet_tile, vae_tile), notes
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            empty_cache(device)
            if index + 1 == len(attempts):
                raise OutOfMemory(
                    f"{name} ran out of memory on {device} even with {unet_tile} px latent tiles; use a smaller "
                    "image, --offload sequential or another engine"
                ) from exc
            note = (
                f"{name} ran out of memory on {device} with {_tiles(unet_tile, vae_tile)}; "
                f"retried with {_tiles(*attempts[index + 1])}"
            )
            notice(note)
            notes.append(note)
    raise ValueError("no attempts given")


def _tiles(unet_tile: int, vae_tile: int) -> str:
    return f"latent tile {unet_tile or 'off'}, VAE tile {vae_tile or 'off'}"
