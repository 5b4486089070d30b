"""SUPIR-style restoration on SDXL: `engine` (knobs, working size, provenance), `recipe` (restoration-guided
EDM sampling), `networks` (official ZeroSFT control and denoise encoder), `caption` (prompt captioner)."""
