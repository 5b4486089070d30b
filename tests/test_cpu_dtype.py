"""The CPU dtype follows what the processor runs natively (its feature flags), and the plan says so."""

from __future__ import annotations

import pytest

from studio import devices

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX512_BF16 | {"amx_bf16", "amx_tile", "avx512_fp16"}
ARM_BF16 = frozenset({"fp", "asimd", "bf16"})


@pytest.mark.parametrize(
    ("requested", "flags", "chosen"),
    [
        (None, AVX2, "fp32"),
        (None, SAPPHIRE_RAPIDS, "fp32"),  # fp32 stays the default: exact and reproducible on every CPU
        ("bf16", AVX2, "fp32"),  # emulated bf16: the 32-minute SUPIR run of issue 19
        ("fp16", AVX2, "fp32"),
        ("bf16", AVX512_BF16, "bf16"),
        ("fp16", AVX512_BF16, "bf16"),  # no fp16 arithmetic, but bf16: same memory, fast
        ("fp16", SAPPHIRE_RAPIDS, "fp16"),
        ("bf16", ARM_BF16, "bf16"),
        ("fp32", SAPPHIRE_RAPIDS, "fp32"),
    ],
)
def test_cpu_dtype_is_what_the_processor_accelerates(requested: str | None, flags: frozenset, chosen: str) -> None:
    got, why = devices.cpu_dtype(requested, flags)
    assert got == chosen
    if requested not in (None, "fp32", chosen):
        assert f"no native {requested}" in why or "no fp16 arithmetic" in why


def test_compute_dtype_on_a_cpu_without_bf16_runs_fp32_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(devices, "cpu_flags", lambda: AVX2)
    assert devices.compute_dtype(torch.device("cpu"), "bf16") == torch.float32
    assert "--dtype bf16: this CPU has no native bf16 arithmetic" in capsys.readouterr().err
    monkeypatch.setattr(devices, "cpu_flags", lambda: AVX512_BF16)
    assert devices.compute_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert devices.compute_dtype(torch.device("cpu")) == torch.float32


def test_cpu_flags_are_read_from_this_machine() -> None:
    flags = devices.cpu_flags()
    assert isinstance(flags, frozenset)
    assert devices.describe_dtype(__import__("torch").device("cpu")).startswith("fp32 on the CPU")


def test_a_diffusion_engines_plan_names_its_dtype_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.engines.stablesr.engine import StableSREngine
    from studio.settings import resolve

    monkeypatch.setattr(devices, "cpu_flags", lambda: AVX512_BF16)
    engine = StableSREngine(resolve({"engine": "stablesr", "device": "cpu"}))  # the default files: not read
    assert engine.plan(32, 32, 2.0)["dtype"] == (
        "fp32 on the CPU: exact, and natively fast; it also runs bf16 natively (--dtype bf16 where an engine takes it)"
    )
