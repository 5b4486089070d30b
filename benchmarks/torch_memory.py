"""Peak memory held by torch tensors on the CPU, the stand-in for `torch.cuda.max_memory_allocated()`.

torch keeps no allocation statistics for the CPU, but its profiler records every allocation and free
(`profile_memory`). Summing them in time order gives the tensors' high-water mark during a call, above
what was held when it started: what the same call would hold on a GPU, since there every one of those
tensors would live on the device (host numpy arrays are not in it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Result = TypeVar("Result")


def torch_peak(run: Callable[[], Result]) -> tuple[Result, int]:
    """(run(), the peak bytes held by CPU torch tensors during it above those held when it started)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = run()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    level = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        if event.device_type() == DeviceType.CPU:
            level += event.nbytes()
            peak = max(peak, level)
    return result, peak
