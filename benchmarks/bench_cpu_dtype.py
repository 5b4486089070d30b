"""What this CPU runs fast: a 3x3 convolution (the UNet/VAE's staple) and a matmul in fp32, bf16 and fp16,
side by side in one run, with the dtype studio chooses here and why (studio.devices.cpu_dtype).

Prints one JSON document: the CPU's half-precision feature flags, GFLOP/s per dtype and layout (contiguous
and channels-last), and studio's choice for each --dtype.

    python benchmarks/bench_cpu_dtype.py --threads 2      # ~20 s
"""

from __future__ import annotations

import argparse
import json
import time


def gflops(run, flops: float, repeats: int) -> float:
    run()  # warm-up: oneDNN picks and caches its kernel
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return round(flops * repeats / (time.perf_counter() - start) / 1e9, 2)


def conv_rate(dtype, channels_last: bool, size: int, repeats: int) -> float:
    import torch

    x = torch.randn(1, 128, size, size, dtype=dtype)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(dtype)
    if channels_last:
        x, conv = x.to(memory_format=torch.channels_last), conv.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        return gflops(lambda: conv(x), 2 * 128 * 128 * 9 * size * size, repeats)


def matmul_rate(dtype, n: int, repeats: int) -> float:
    import torch

    a = torch.randn(n, n).to(dtype)
    return gflops(lambda: a @ a, 2 * n**3, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--size", type=int, default=64, help="feature map side of the convolution")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import os

    import torch

    from studio.devices import CPU_BF16_FLAGS, CPU_FP16_FLAGS, cpu_dtype, cpu_flags

    if args.threads:
        torch.set_num_threads(args.threads)
    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    flags = cpu_flags()
    report = {
        "cpu_half_flags": sorted(flags & (CPU_BF16_FLAGS | CPU_FP16_FLAGS)),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2),
        "conv3x3_gflops": {
            name: {
                "contiguous": conv_rate(dtype, False, args.size, args.repeats),
                "channels_last": conv_rate(dtype, True, args.size, args.repeats),
            }
            for name, dtype in names.items()
        },
        "matmul_gflops": {name: matmul_rate(dtype, 512, args.repeats) for name, dtype in names.items()},
        "studio_choice": {str(asked): cpu_dtype(asked, flags) for asked in (None, "fp32", "bf16", "fp16")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
