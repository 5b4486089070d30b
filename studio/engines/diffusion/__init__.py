"""Diffusion engines and the pieces they share.

Shared modules (what a StableSR-/SUPIR-style engine builds on): `recipe` (the pipeline skeleton:
subclass `Recipe` and override steps), `conditioning` (named conditioning tensors), `guidance`
(classifier-free guidance over a conditioned model), `samplers` (diffusers schedulers and the EDM loop
with an x0 hook), `adapters` (ControlNet), `loading` (model sources, offline checks, device/dtype),
`latent_tiling` and `tiled_vae` (tiling wrappers), `offload` (placement of modules), `memory`
(out-of-memory retries with smaller tiles).
Engines: `sd_x4` (its recipe: `upscale_pipeline`). Nothing here imports torch or diffusers at module
import time.
"""
