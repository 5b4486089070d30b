"""The shared diffusion core: what every diffusion engine builds on, and no engine itself.

`recipe` (the pipeline skeleton: subclass `Recipe` and override steps), `conditioning` (named conditioning
tensors), `guidance` (classifier-free guidance over a conditioned model), `samplers` (diffusers schedulers,
the EDM loop with an x0 hook), `controlnet` and `controlnet_files` (ControlNets from folders, hub ids, single
files), `identify` (which official layout an adapter file has), `loading` (model sources, offline checks,
device and dtype), `latent_tiling` (tiled denoiser, tile policy), `tiled_vae` (tiled encode/decode with shared
GroupNorm statistics), `pixels` (host-side pixel images read window by window), `offload` (placement of
modules), `memory` (out-of-memory retries with smaller tiles). Nothing here imports torch or diffusers at
module import time.
"""
