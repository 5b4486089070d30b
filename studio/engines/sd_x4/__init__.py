"""The Stable Diffusion x4 upscaler engine: `engine` (settings, provenance), `pipeline` (its recipe)."""
