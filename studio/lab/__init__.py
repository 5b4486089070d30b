"""The evaluation toolkit: `degrade` (test pairs from clean images, with `degradation_profiles`), `evaluate`
(metrics per run over pairs), `compare` and `sheet` (side-by-side runs on one image), `runs` (parsing
`--run` specs), `perceptual` (LPIPS through the weights registry)."""
