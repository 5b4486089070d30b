"""`--remote` and its token: what is accepted, where the token comes from, and that it is never shown."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from studio.errors import UsageError
from studio.remote import RemoteTarget, confirm_paid
from studio.remote.target import parse_target
from studio.settings import Settings, apply_layer


def target_of(**values) -> RemoteTarget | None:
    return parse_target(apply_layer(Settings(), values, "cli"))


def test_targets_and_their_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    assert target_of() is None
    server = target_of(remote="https://gpu-box:8765/", remote_token="abc")
    assert (server.kind, server.address, server.token, server.paid) == ("studio", "https://gpu-box:8765", "abc", False)
    assert "abc" not in repr(server)
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_env")
    model = target_of(
        remote="replicate:nightmareai/real-esrgan:f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa"
    )
    assert (model.kind, model.token, model.paid, model.host) == ("replicate", "r8_env", True, "api.replicate.com")
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_env")
    assert target_of(remote="runpod:abc123xyz", remote_token="flag").token == "flag"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gpu-box:8765", "expected a studio serve URL"),
        ("ftp://gpu-box", "expected a studio serve URL"),
        ("http://me:secret@gpu-box:8765", "not the URL"),
        ("replicate:no-owner", "expected a studio serve URL"),
        ("runpod:a/b", "expected a studio serve URL"),
        ("runpod:abc123xyz", "RunPod needs a token: set RUNPOD_API_KEY or --remote-token"),
    ],
)
def test_bad_targets_are_one_line(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        target_of(remote=value)
    assert "secret" not in str(caught.value)


def test_the_token_is_shown_as_set_and_never_as_its_value() -> None:
    settings = apply_layer(Settings(), {"remote": "http://127.0.0.1:1", "remote_token": "hush"}, "cli")
    assert settings.to_dict()["remote_token"] == "(set)" and settings.remote_token == "hush"
    assert "hush" not in repr(settings)
    assert Settings().to_dict()["remote_token"] is None


def test_a_paid_batch_asks_and_a_no_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = SimpleNamespace(target=RemoteTarget("replicate", "acme/upscaler", "t"))  # all it reads
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked = []
    confirm_paid(provider, 3, yes=False, ask=lambda question: asked.append(question) or True)
    assert asked == ["Send 3 job(s) to Replicate acme/upscaler, which bills each one?"]
    with pytest.raises(UsageError, match="not confirmed: nothing was sent"):
        confirm_paid(provider, 3, yes=False, ask=lambda question: False)
    confirm_paid(provider, 3, yes=True, ask=None)  # --yes: no question
