"""LoRA adapters of one-step methods, put on diffusers models through PEFT and filled strictly.

The methods' files store LoRA weights under the names PEFT gives them once an adapter is injected
(`...to_q.lora_A.default_encoder.weight`, `conv_in.base_layer.weight`), so loading is: inject the
adapters the file describes, then fill every selected parameter from the file, one to one. Anything
missing, extra or misshapen stops with one line naming the first key that does not fit; the same
check runs on modules built on the meta device for --dry-run, without the base weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from studio.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

DEFAULT_ALPHA = 8
"""PEFT's default `lora_alpha`: the methods' files do not store one, so their LoRA scale is 8 / rank."""


def add_lora(module: Any, rank: int, targets: Iterable[str], name: str) -> None:
    """Inject a PEFT LoRA adapter `name` of `rank` on the named submodules (diffusers' `add_adapter`)."""
    import warnings

    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=DEFAULT_ALPHA, target_modules=sorted(set(targets)))
    with warnings.catch_warnings():  # PEFT warns at every adapter after the first; several are the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        module.add_adapter(config, adapter_name=name)


def fill_exactly(
    module: Any,
    state: dict[str, torch.Tensor],
    selects: Callable[[str], bool],
    origin: str,
    what: str,
    copy: bool = True,
) -> int:
    """Fill every parameter of `module` whose name `selects` from `state`, which must hold exactly
    those names with their shapes. `copy=False` only checks (modules on the meta device). Returns
    how many tensors were placed."""
    import torch

    targets = {name: param for name, param in module.named_parameters() if selects(name)}
    for name, param in targets.items():
        if name not in state:
            raise ModelLoadError(f"{origin}: no {what} weight for '{name}' (the file's adapters do not match the base)")
        got = tuple(state[name].shape)
        if got != tuple(param.shape):
            raise ModelLoadError(f"{origin}: {what} '{name}' has shape {got}, expected {tuple(param.shape)}")
    extra = sorted(set(state) - set(targets))
    if extra:
        raise ModelLoadError(
            f"{origin}: {what} key '{extra[0]}' (and {len(extra) - 1} more) fits no parameter of the base"
        )
    if copy:
        with torch.no_grad():
            for name, param in targets.items():
                param.copy_(state[name].to(dtype=param.dtype))
    return len(targets)


def activate(module: Any, names: list[str]) -> None:
    """Make every one of `names` active at once (diffusers activates only the last adapter added)."""
    module.set_adapter(names if len(names) > 1 else names[0])


def fuse(module: Any) -> int:
    """Merge the active LoRA weights into their base layers (faster: one matmul per layer). Returns
    how many layers were merged; the adapters stay attached but no longer run."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = 0
    for layer in module.modules():
        if isinstance(layer, BaseTunerLayer) and not layer.merged:
            layer.merge(adapter_names=[name for name in layer.active_adapters if name in layer.lora_A])
            merged += 1
    return merged
