"""Remote tests: no token or provider address from the developer's environment; hosts remembered per test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.serving import TOKEN, free_port


@pytest.fixture(autouse=True)
def isolated_remote(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in ("STUDIO_REMOTE_TOKEN", "REPLICATE_API_TOKEN", "RUNPOD_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `studio serve` app (uvicorn, the same workers) on 127.0.0.1 in this process, with a token."""
    import uvicorn

    from studio.serve.app import create_app
    from studio.serve.config import ServeConfig

    config = ServeConfig(tmp_path_factory.mktemp("serve"), token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the in-process studio server did not start"
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)
