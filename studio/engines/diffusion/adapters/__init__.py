"""Adapters: how an image steers a diffusion model besides the prompt (ControlNet; StableSR and SUPIR
modules build here too). Each turns a UNet into a conditioned model reading named `Conditioning` entries."""
