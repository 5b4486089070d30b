"""Test support, not product: tiny random models with real architectures for tests and benchmarks.

`tiny_sd` (SD x4 / SD 1.x-2.x components and ControlNets), `tiny_sdxl` (SDXL base and ControlNet). Random
weights test wiring and knobs, never restoration quality.
"""
