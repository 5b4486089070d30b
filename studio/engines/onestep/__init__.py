"""The `onestep` engine: one-step diffusion restoration (OSEDiff, S3Diff) on the shared diffusion core."""
