"""Diffusion engines and the pieces they share.

Shared modules (reusable by StableSR-/SUPIR-style engines): `loading` (model sources, offline checks,
device/dtype, offload), `schedulers` (names -> diffusers schedulers), `guidance` and `latent_tiling`
(wrappers around a denoiser callable; `latent_tiling` also picks the tiles), `tiled_vae` (tiled encoding
and decoding with shared GroupNorm statistics).
Engines: `sd_x4`. Nothing here imports torch or diffusers at module import time.
"""
