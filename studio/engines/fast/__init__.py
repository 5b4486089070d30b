"""The fast engine: Real-ESRGAN (bundled, ncnn on the CPU), any spandrel network, ensembles, SwinIR tasks."""
