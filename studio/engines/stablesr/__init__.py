"""StableSR on the shared diffusion core: `engine` (knobs, fidelity mapping, provenance), `recipe`,
`networks` (time-aware encoder, SPADE, CFW), `keys` (official key maps), `files` (official file readers)."""
