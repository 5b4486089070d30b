"""The evaluation toolkit: make test pairs, score runs on them, and look at runs side by side.

The loop it serves: `degrade` turns clean images into aligned (clean, low-quality) pairs with a named
profile from `degradation_profiles`; `evaluate` restores every pair with each run and scores it
(PSNR/SSIM from `studio.ops.metrics`, LPIPS from `perceptual`, whose backbone is a registry entry);
`compare` restores one photo with each run and `sheet` draws the result as a sheet and a slider page.
A run (`runs`) is a named set of restore settings, resolved exactly as `studio restore` resolves its
flags. The lab restores through the runner, like the CLI and the service, and never imports `cli`.
"""
