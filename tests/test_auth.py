"""API keys: where they come from, who may call what, and what `serve` refuses."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import ConfigError, InputError, Router
from modeltriage.cli.main import main
from modeltriage.cli.parser import build_parser
from modeltriage.cli.serving import is_loopback, serve_plan
from modeltriage.http.app import create_app
from modeltriage.http.auth import ApiKeys

ROUTE_KEY = "route-key-aaaaaaaaaaaa"
ADMIN_KEY = "admin-key-bbbbbbbbbbbb"
ROUTE = {"authorization": f"Bearer {ROUTE_KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
WRONG = {"authorization": "Bearer wrong-key-cccccccccccc"}
MARK = "/health/models/small-a/unhealthy"
ASK = {"text": "when do you open on sunday"}

MakeClient = Callable[[ApiKeys], TestClient]


@pytest.fixture
def client_with(fake_router: Router) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(keys: ApiKeys) -> TestClient:
        client = TestClient(create_app(router=fake_router, keys=keys))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


# --- where keys come from -------------------------------------------------------------


def test_keys_from_the_environment_are_comma_separated() -> None:
    env = {
        "MODELTRIAGE_API_KEYS": f" {ROUTE_KEY}, ,x{ROUTE_KEY}",
        "MODELTRIAGE_ADMIN_KEYS": ADMIN_KEY,
    }
    keys = ApiKeys.from_env(env)
    assert keys.route == (ROUTE_KEY, f"x{ROUTE_KEY}") and keys.admin == (ADMIN_KEY,)
    assert ApiKeys.from_env({}) == ApiKeys() and ApiKeys().route_open
    assert not ApiKeys().admin_enabled


def test_a_keys_file_has_one_role_and_key_a_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# ops\nroute {ROUTE_KEY}\n\nadmin {ADMIN_KEY}  # on-call\n")
    keys = ApiKeys.load(path, {"MODELTRIAGE_API_KEYS": f"env-{ROUTE_KEY}"})
    assert keys.route == (f"env-{ROUTE_KEY}", ROUTE_KEY) and keys.admin == (ADMIN_KEY,)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (f"route {ROUTE_KEY}\nsuperuser {ADMIN_KEY}\n", 2, "expected `route KEY`"),
        (f"admin {ADMIN_KEY} extra\n", 1, "expected `route KEY`"),
        ("\n\nroute short\n", 3, "at least 16"),
        (f"route {ROUTE_KEY}é\n", 1, "printable ASCII"),
    ],
)
def test_a_bad_keys_file_names_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment) as info:
        ApiKeys.from_file(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert ADMIN_KEY not in str(info.value) and ROUTE_KEY not in str(info.value)


def test_a_bad_env_key_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError, match=r"\$MODELTRIAGE_ADMIN_KEYS: a key needs") as info:
        ApiKeys.from_env({"MODELTRIAGE_ADMIN_KEYS": "hunter2"})
    assert "hunter2" not in str(info.value)


def test_keys_never_show_in_repr() -> None:
    keys = ApiKeys(route=(ROUTE_KEY,), admin=(ADMIN_KEY,))
    assert repr(keys) == "ApiKeys(route=1 keys, admin=1 keys)"
    assert ROUTE_KEY not in f"{keys}" and ADMIN_KEY not in f"{keys!r}"


def test_role_of_compares_every_key() -> None:
    keys = ApiKeys(route=(ROUTE_KEY,), admin=(ADMIN_KEY,))
    assert keys.role_of(ROUTE_KEY) == "route" and keys.role_of(ADMIN_KEY) == "admin"
    assert keys.role_of(ROUTE_KEY[:-1]) is None and keys.role_of("") is None
    # A key listed under both roles is an admin key.
    assert ApiKeys(route=(ADMIN_KEY,), admin=(ADMIN_KEY,)).role_of(ADMIN_KEY) == "admin"


# --- who may call what -------------------------------------------------------------------


def test_by_default_routing_is_open_and_admin_endpoints_are_off(
    client_with: MakeClient,
) -> None:
    client = client_with(ApiKeys())
    assert client.post("/route", json=ASK).status_code == 200
    r = client.post(MARK, json={"cooldown_s": 10})
    assert r.status_code == 403 and "MODELTRIAGE_ADMIN_KEYS" in r.json()["detail"]
    assert client.delete("/health/models/small-a").status_code == 403
    assert client.get("/health/models").json() == {"unhealthy": []}


def test_route_keys_lock_the_route_endpoints(client_with: MakeClient) -> None:
    client = client_with(ApiKeys(route=(ROUTE_KEY,), admin=(ADMIN_KEY,)))
    for headers in ({}, WRONG, {"authorization": f"Basic {ROUTE_KEY}"}):
        r = client.post("/route", json=ASK, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
    for path in ("/route/batch", "/feedback", "/escalate", "/next-model"):
        assert client.post(path, json={}).status_code == 401, path
    for path in ("/decisions/d-1", "/health/models", "/metrics"):
        assert client.get(path).status_code == 401, path
    assert client.post("/route", json=ASK, headers=ROUTE).status_code == 200
    assert client.post("/route", json=ASK, headers=ADMIN).status_code == 200  # admin passes
    # Liveness and readiness stay open for probes.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_a_route_key_on_an_admin_endpoint_is_403(client_with: MakeClient) -> None:
    client = client_with(ApiKeys(route=(ROUTE_KEY,), admin=(ADMIN_KEY,)))
    r = client.post(MARK, json={"cooldown_s": 10}, headers=ROUTE)
    assert r.status_code == 403 and "admin key" in r.json()["detail"]
    assert client.post(MARK, json={"cooldown_s": 10}).status_code == 401
    assert client.post(MARK, json={"cooldown_s": 10}, headers=WRONG).status_code == 401
    assert client.get("/health/models", headers=ROUTE).json()["unhealthy"] == []
    assert client.post(MARK, json={"cooldown_s": 10}, headers=ADMIN).status_code == 200


def test_admin_keys_alone_leave_routing_open(client_with: MakeClient) -> None:
    client = client_with(ApiKeys(admin=(ADMIN_KEY,)))
    assert client.post("/route", json=ASK).status_code == 200
    assert client.post(MARK).status_code == 401
    assert client.post(MARK, headers=ADMIN).status_code == 200


def test_the_reported_attack_is_refused(client_with: MakeClient) -> None:
    """Issue 12: six anonymous marks pushed all traffic to the flagship; a web page could
    do it with an empty text/plain body."""
    client = client_with(ApiKeys())
    for _ in range(6):
        r = client.post(MARK, json={"cooldown_s": 1e10})
        assert r.status_code == 403
        r = client.post(
            MARK,
            content=b"",
            headers={"content-type": "text/plain", "origin": "https://evil.example"},
        )
        assert r.status_code == 415
        assert "access-control-allow-origin" not in r.headers
    assert client.post("/route", json=ASK).json()["tier"] != "flagship"


def test_a_mark_is_cleared_with_delete(client_with: MakeClient) -> None:
    client = client_with(ApiKeys(admin=(ADMIN_KEY,)))
    assert client.post(MARK, json={"cooldown_s": 600}, headers=ADMIN).status_code == 200
    assert [m["model"] for m in client.get("/health/models").json()["unhealthy"]] == ["small-a"]
    assert client.delete("/health/models/small-a").status_code == 401
    r = client.delete("/health/models/small-a", headers=ADMIN)
    assert r.json() == {"model": "small-a", "cleared": True}
    assert client.get("/health/models").json()["unhealthy"] == []
    r = client.delete("/health/models/small-a", headers=ADMIN)
    assert r.json() == {"model": "small-a", "cleared": False}
    r = client.delete("/health/models/gpt-9", headers=ADMIN)
    assert r.status_code == 422 and "unknown model" in r.json()["detail"]
    r = client.delete("/health/models/" + "x" * 300, headers=ADMIN)
    assert r.status_code == 422 and len(r.text) < 1000


def test_keys_are_never_logged(client_with: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    client = client_with(ApiKeys(route=(ROUTE_KEY,), admin=(ADMIN_KEY,)))
    with caplog.at_level(logging.DEBUG):
        client.post("/route", json=ASK, headers=ROUTE)
        client.post("/route", json=ASK, headers=WRONG)
        client.post(MARK, headers=ADMIN)
    assert ROUTE_KEY not in caplog.text and ADMIN_KEY not in caplog.text
    assert "wrong-key" not in caplog.text


# --- serve's flags -------------------------------------------------------------------------


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_refuses_an_open_service_off_loopback() -> None:
    with pytest.raises(InputError, match=r"refusing to serve on 0\.0\.0\.0 with no route key"):
        serve_plan(serve_args("--host", "0.0.0.0"), {})
    plan = serve_plan(serve_args("--host", "0.0.0.0", "--insecure-no-auth"), {})
    assert plan.keys.route_open and any("without a key" in w for w in plan.warnings)
    plan = serve_plan(serve_args("--host", "0.0.0.0"), {"MODELTRIAGE_API_KEYS": ROUTE_KEY})
    assert plan.keys.route == (ROUTE_KEY,) and plan.warnings == [
        "admin endpoints are off (no admin key)"
    ]


def test_serve_refuses_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELTRIAGE_API_KEYS", raising=False)
    status = main(["serve", "--host", "0.0.0.0", "--intents", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert status == 1 and "refusing to serve on 0.0.0.0" in err and "Traceback" not in err
    keys = tmp_path / "keys"
    keys.write_text("root abcdefabcdefabcdef\n")
    assert main(["serve", "--keys-file", str(keys), "--intents", str(tmp_path)]) == 1
    assert f"{keys}:1: expected `route KEY`" in capsys.readouterr().err


def test_serve_cors_and_log_settings() -> None:
    args = serve_args("--cors-origin", "https://a.example", "--log-format", "json")
    plan = serve_plan(args, {"MODELTRIAGE_CORS_ORIGINS": "https://b.example, https://a.example"})
    assert plan.cors_origins == ["https://a.example", "https://b.example"]
    assert plan.json_logs and plan.uvicorn == {
        "timeout_keep_alive": 5.0,
        "http": "modeltriage.http.header_guard:GuardedProtocol",
        "log_config": None,
        "access_log": False,
    }
    with pytest.raises(InputError, match="name each origin"):
        serve_plan(serve_args("--cors-origin", "*"), {})
    with pytest.raises(InputError, match="timeout-keep-alive"):
        serve_plan(serve_args("--timeout-keep-alive", "0"), {})
