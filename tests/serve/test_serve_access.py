"""Who may see what (issue 22, item 5): named tokens with per-client jobs, no empty tokens, a private data
dir, no requests from other sites or through rebound DNS names, and headers that keep the page to itself."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from studio.cli import app as cli_app

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from support.serving import client, png, post, wait  # noqa: E402

from studio.serve.tokens import TokenFile  # noqa: E402


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_each_client_token_sees_only_its_own_jobs_and_an_operator_sees_all(tmp_path: Path, astronaut) -> None:
    """failed before: one token saw, downloaded and cancelled every client's jobs; there were no named tokens."""
    data_dir = tmp_path / "data"
    tokens = TokenFile(data_dir / "tokens.json")
    alice, bob, ops = tokens.add("alice"), tokens.add("bob"), tokens.add("ops", operator=True)
    with client(data_dir, start_workers=False) as app:
        assert post(app, png(astronaut)).status_code == 401  # tokens exist: the server is closed to others
        mine = post(app, png(astronaut), **_bearer(alice)).json()["id"]
        theirs = post(app, png(astronaut), **_bearer(bob)).json()["id"]
        assert [job["id"] for job in app.get("/api/v1/jobs", headers=_bearer(alice)).json()] == [mine]
        for path in (f"/api/v1/jobs/{theirs}", f"/api/v1/jobs/{theirs}/input", f"/api/v1/jobs/{theirs}/result"):
            assert app.get(path, headers=_bearer(alice)).status_code == 404, path  # as absent as an unknown id
        assert app.delete(f"/api/v1/jobs/{theirs}", headers=_bearer(alice)).status_code == 404
        assert app.get(f"/api/v1/jobs/{theirs}", headers=_bearer(bob)).json()["status"] == "queued"
        assert {job["id"] for job in app.get("/api/v1/jobs", headers=_bearer(ops)).json()} == {mine, theirs}
        assert app.delete(f"/api/v1/jobs/{theirs}", headers=_bearer(ops)).json()["status"] == "cancelled"
        tokens.revoke("alice")
        assert app.get("/api/v1/jobs", headers=_bearer(alice)).status_code == 401  # at once, no restart
    on_disk = (data_dir / "tokens.json").read_text()
    assert bob not in on_disk and hashlib.sha256(bob.encode()).hexdigest() in on_disk  # hashed at rest
    assert stat.S_IMODE((data_dir / "tokens.json").stat().st_mode) == 0o600


def test_the_serve_token_commands_add_list_and_revoke(tmp_path: Path) -> None:
    """failed before: no `studio serve token` commands."""
    where = ["--data-dir", str(tmp_path / "data")]
    added = CliRunner().invoke(cli_app, ["serve", "token", "add", "carol", *where])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert len(token) >= 40
    listed = CliRunner().invoke(cli_app, ["serve", "token", "list", *where])
    assert "carol" in listed.output and "client (own jobs)" in listed.output and token not in listed.output
    again = CliRunner().invoke(cli_app, ["serve", "token", "add", "carol", *where])
    assert again.exit_code == 2 and "taken" in again.output
    assert CliRunner().invoke(cli_app, ["serve", "token", "revoke", "carol", *where]).exit_code == 0
    assert "carol" not in CliRunner().invoke(cli_app, ["serve", "token", "list", *where]).output


@pytest.mark.parametrize("token, host", [("", "127.0.0.1"), ("   ", "0.0.0.0"), (" padded ", "127.0.0.1")])
def test_empty_and_blank_tokens_are_refused(monkeypatch: pytest.MonkeyPatch, token: str, host: str) -> None:
    """failed before: --token "" accepted an empty Bearer header; a blank token bound 0.0.0.0."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    result = CliRunner().invoke(cli_app, ["serve", "--token", token, "--host", host])
    assert result.exit_code == 2 and "--token" in result.output and "Traceback" not in result.output


def test_the_data_dir_and_every_file_in_it_are_private(tmp_path: Path, astronaut) -> None:
    """0700 folders, 0600 files, whatever the umask (here 022).
    failed before: data dir 0755, results and database 0644: any local user read everyone's photos."""
    data_dir = tmp_path / "data"
    with client(data_dir) as app:
        job = wait(app, post(app, png(astronaut)).json()["id"])
        assert job["status"] == "done"
    paths = [data_dir, *data_dir.rglob("*")]
    for path in paths:
        wanted = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == wanted, path
    assert len([p for p in paths if p.is_file()]) >= 4  # database, input, result, job.json


def test_requests_from_other_sites_and_through_rebound_names_are_refused(tmp_path: Path, astronaut) -> None:
    """A loopback server with no token: a page on another site cannot post, a DNS name rebound to 127.0.0.1
    cannot reach it; the page itself (same origin) and --allowed-host names can.
    failed before: any web page the user visited could post jobs."""
    with client(tmp_path / "data", start_workers=False, allowed_hosts=("studio.example",)) as app:
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Host": "rebound.evil.example:8765"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            refused = post(app, png(astronaut), **headers)
            assert refused.status_code == 403 and refused.json()["detail"], headers
            assert app.get("/api/v1/jobs", headers=headers).status_code == 403
        assert app.get("/api/v1/jobs").json() == []
        assert post(app, png(astronaut), Origin="http://127.0.0.1:8765").status_code == 202  # the page's own
        assert post(app, png(astronaut), Host="localhost:8765").status_code == 202
        assert post(app, png(astronaut), Host="studio.example").status_code == 202


def test_every_answer_carries_a_policy_that_keeps_the_page_to_itself(tmp_path: Path) -> None:
    """CSP allowing only the page's own inline script (by hash), no framing, no sniffing; no /docs from a CDN.
    failed before: no such headers; /docs loaded Swagger from a CDN and was blank offline."""
    with client(tmp_path / "data", start_workers=False) as app:
        page = app.get("/")
        for response in (page, app.get("/healthz"), app.get("/api/v1/engines"), app.get("/api/v1/jobs/nope")):
            policy = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
            assert response.headers["x-content-type-options"] == "nosniff"
        script = re.search(r"<script>(.*?)</script>", page.text, re.DOTALL).group(1)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"script-src 'sha256-{digest}'" in page.headers["content-security-policy"]
        assert app.get("/docs").status_code == 404 and "https://" not in page.text
        assert json.loads(app.get("/openapi.json").text)["paths"]
