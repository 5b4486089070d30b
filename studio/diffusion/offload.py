"""Where model components live while a job runs: all on the device, or offloaded to CPU RAM.

- encoders (the default): the text encoders wait in CPU RAM and move to the device only to encode the
  prompt, once per image; the denoising and decoding networks stay on the device. SDXL's two text
  encoders are 1.6 GB in fp16, left idle on the GPU for the whole sampling loop otherwise.
- none: every component on the device (most memory).
- model: components stay in CPU RAM; each moves to the device only while it is used (text encoder,
  then UNet, then VAE), so the peak is the largest component plus activations.
- sequential: accelerate's per-submodule offload; weights stream to the device layer by layer
  (slowest, smallest footprint).
On CPU there is nothing to offload to, so every mode behaves like none, unless `even_on_cpu` asks
for the mode anyway (accelerate accepts the CPU as execution device): the tests exercise the real
hooks that way, catching offload bugs that would otherwise only show on a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class Placement:
    """Applies one offload mode to a set of modules; `using(module)` brackets each use."""

    def __init__(self, mode: str, device: torch.device, even_on_cpu: bool = False) -> None:
        self.mode = mode if device.type != "cpu" or even_on_cpu else "none"
        self.device = device
        self._on_demand: set[int] = set()

    def prepare(self, modules: list[torch.nn.Module], encoders: tuple[torch.nn.Module, ...] = ()) -> None:
        """Put each module where the mode wants it before the first use (`encoders`: the text encoders,
        which the 'encoders' mode keeps in CPU RAM between uses)."""
        if self.mode in ("none", "encoders"):
            self._on_demand = {id(module) for module in encoders} if self.mode == "encoders" else set()
            for module in modules:
                module.to("cpu" if id(module) in self._on_demand else self.device)
        elif self.mode == "model":
            for module in modules:
                module.to("cpu")
        else:
            from accelerate import cpu_offload

            for module in modules:
                cpu_offload(module, execution_device=self.device)

    @contextmanager
    def using(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """In 'model' mode (and for the text encoders in 'encoders' mode) move `module` to the device for the
        block and back to RAM afterwards."""
        if self.mode != "model" and id(module) not in self._on_demand:
            yield module
            return
        from studio.devices import empty_cache

        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")
            empty_cache(self.device)
