"""How the low-res image steers a diffusion model: ControlNet, StableSR, SUPIR; official key maps live here."""
