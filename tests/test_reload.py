"""Hot reload in process (issue 12): the library's ServingRouter and POST /admin/reload.
A broken edit never replaces the serving router; in-flight requests finish on theirs.
Fake encoder; one real test through MiniLM and FAISS. SIGHUP and --watch, which need a
real server process, are in test_serve_process.py."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, SentenceTransformerEncoder
from modeltriage.core.decision import Decision
from modeltriage.core.encoders import Vectors
from modeltriage.errors import ConfigError, StaleIndexError
from modeltriage.http.app import create_app
from modeltriage.http.auth import require_admin
from modeltriage.reloader import ServingRouter
from tests.conftest import ROUTER_YAML, TINY_INTENTS, write_intents

LOGGED_YAML = ROUTER_YAML + "log: {url: decisions.db}\n"
BILLING = "name: billing\ndifficulty: hard\nexemplars:\n  - my invoice shows a double charge\n"
JSON = {"content-type": "application/json"}
BROKEN = "name: refund\ndifficulty: moderate\nexemplars:\n  - refund please\n  bad: [\n"


@pytest.fixture
def intents(tmp_path: Path) -> Path:
    return write_intents(tmp_path / "intents", TINY_INTENTS, LOGGED_YAML)


def load(intents: Path, encoder: HashingEncoder | None = None) -> ServingRouter:
    return ServingRouter.load(intents, encoder=encoder or HashingEncoder(), build_if_needed=True)


def test_reload_swaps_in_the_edited_intents(intents: Path) -> None:
    with load(intents) as holder:
        before = holder.router
        assert before.route("my invoice shows a double charge").intent != "billing"
        (intents / "billing.yaml").write_text(BILLING)
        outcome = holder.reload("test")
        assert outcome.ok and outcome.error is None
        assert outcome.index_version != outcome.previous_version
        assert holder.router is not before and holder.reloads == 1
        assert holder.router.route("my invoice shows a double charge").intent == "billing"
        assert holder.router.logger is before.logger  # one log for every generation


def test_a_broken_edit_keeps_the_old_router_and_names_file_and_line(intents: Path) -> None:
    with load(intents) as holder:
        before = holder.router
        (intents / "refund.yaml").write_text(BROKEN)
        outcome = holder.reload("test")
        assert not outcome.ok and holder.router is before
        assert outcome.error is not None and outcome.error.startswith("refund.yaml:5:")
        assert str(intents) not in outcome.error  # /healthz shows it: no install path
        assert holder.last_error == outcome.error and holder.failed_reloads == 1
        assert holder.router.route("refund please").intent == "refund"
        (intents / "refund.yaml").write_text(BROKEN.replace("  bad: [\n", ""))
        assert holder.reload("test").ok and holder.last_error is None


def test_an_emptied_intents_directory_is_refused_without_its_path(intents: Path) -> None:
    with load(intents) as holder:
        for name in TINY_INTENTS:
            (intents / name).unlink()
        outcome = holder.reload("test")
        assert not outcome.ok and outcome.error == (
            "the intents directory: no intent files (*.yaml) found"
        )
        assert holder.router.route("refund please").intent == "refund"


def test_a_stale_index_without_building_says_what_to_do(intents: Path) -> None:
    encoder = HashingEncoder()
    load(intents, encoder).close()
    with ServingRouter.load(intents, encoder=encoder) as holder:
        (intents / "billing.yaml").write_text(BILLING)
        outcome = holder.reload("test")
        assert not outcome.ok and outcome.error is not None
        assert "stale" in outcome.error and "modeltriage build" in outcome.error
        assert "then reload" in outcome.error


def test_health_marks_survive_a_reload(intents: Path) -> None:
    with load(intents) as holder:
        holder.router.mark_unhealthy("mid-a", 60)
        assert holder.reload("test").ok
        assert "mid-a" in holder.router.unhealthy_models()


class GatedEncoder(HashingEncoder):
    """Blocks while encoding a text with "slow" in it until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def encode(self, texts: Sequence[str]) -> Vectors:
        if any("slow" in text for text in texts):
            self.entered.set()
            assert self.gate.wait(30)
        return super().encode(texts)


def test_an_in_flight_request_finishes_on_the_old_router_and_is_logged(intents: Path) -> None:
    encoder = GatedEncoder()
    with load(intents, encoder) as holder:
        old = holder.router
        results: list[Decision] = []
        worker = threading.Thread(target=lambda: results.append(old.route("slow refund please")))
        worker.start()
        assert encoder.entered.wait(30)
        (intents / "billing.yaml").write_text(BILLING)
        assert holder.reload("test").ok
        after = holder.router.route("refund please")
        encoder.gate.set()
        worker.join(30)
        (during,) = results
        assert during.index_version == old.manifest.version != after.index_version
        logger = holder.logger
        assert logger is not None and logger.flush(10)
        assert logger.store.decision(during.id) is not None
        assert logger.store.decision(after.id) is not None


def test_keep_last_good_serves_the_last_good_index_of_broken_files(intents: Path) -> None:
    encoder = HashingEncoder()
    with load(intents, encoder) as first:
        version = first.router.manifest.version
    (intents / "refund.yaml").write_text(BROKEN)
    with pytest.raises(ConfigError, match=r"refund\.yaml:5"):
        ServingRouter.load(intents, encoder=encoder)
    with ServingRouter.load(intents, encoder=encoder, keep_last_good=True) as holder:
        assert holder.serving == "last-good"
        assert holder.last_error is not None and holder.last_error.startswith("refund.yaml:5:")
        assert holder.router.manifest.version == version
        assert holder.router.route("refund please").intent == "refund"


def test_keep_last_good_with_nothing_to_fall_back_on_reports_both(intents: Path) -> None:
    (intents / "refund.yaml").write_text(BROKEN)
    with pytest.raises(ConfigError, match="no usable index"):
        ServingRouter.load(intents, encoder=HashingEncoder(), keep_last_good=True)


def test_keep_last_good_covers_a_stale_index_without_building(intents: Path) -> None:
    encoder = HashingEncoder()
    load(intents, encoder).close()
    (intents / "billing.yaml").write_text(BILLING)
    with pytest.raises(StaleIndexError):
        ServingRouter.load(intents, encoder=encoder)
    with ServingRouter.load(intents, encoder=encoder, keep_last_good=True) as holder:
        assert holder.serving == "last-good" and "stale" in (holder.last_error or "")


# --- POST /admin/reload --------------------------------------------------------------------


def admin_client(holder: ServingRouter) -> TestClient:
    app = create_app(holder=holder)
    # The auth module decides who is an admin; these tests are about what reload does.
    app.dependency_overrides[require_admin] = lambda: None
    return TestClient(app)


def test_post_admin_reload_swaps_and_healthz_shows_it(intents: Path) -> None:
    with admin_client(load(intents)) as client:
        before = client.get("/healthz").json()
        assert before["reload"]["reloads"] == 0 and before["reload"]["serving"] == "intents"
        assert before["log"]["durability"] == "ack" and before["log"]["loss_window_s"] == 0
        (intents / "billing.yaml").write_text(BILLING)
        r = client.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json()["reloaded"] is True
        assert r.json()["index_version"] == client.get("/healthz").json()["index_version"]
        routed = client.post("/route", json={"text": "my invoice shows a double charge"})
        assert routed.json()["intent"] == "billing"
        assert client.get("/healthz").json()["reload"]["reloads"] == 1


def test_post_admin_reload_of_broken_yaml_is_409_and_the_old_router_serves(
    intents: Path,
) -> None:
    with admin_client(load(intents)) as client:
        version = client.get("/healthz").json()["index_version"]
        (intents / "refund.yaml").write_text(BROKEN)
        hostile = client.post("/admin/reload", content=b'{"x": NaN}', headers=JSON)
        assert hostile.status_code == 422  # refused before the endpoint, as everywhere
        r = client.post("/admin/reload", json={"ignored": "x" * 10_000})
        assert r.status_code == 409, r.text
        assert r.json()["reloaded"] is False
        assert r.json()["error"].startswith("refund.yaml:5:")
        health = client.get("/healthz").json()
        assert health["index_version"] == version
        assert health["reload"]["last_error"] == r.json()["error"]
        assert health["reload"]["failed_reloads"] == 1
        assert client.post("/route", json={"text": "refund please"}).status_code == 200


def test_admin_reload_is_refused_without_the_admin_role(intents: Path) -> None:
    with TestClient(create_app(holder=load(intents))) as client:
        r = client.post("/admin/reload")
        assert r.status_code == 403 and "admin endpoints are off" in r.json()["detail"]


def test_an_app_given_a_router_has_nothing_to_reload(intents: Path) -> None:
    with load(intents) as holder:
        app = create_app(router=holder.router)
        app.dependency_overrides[require_admin] = lambda: None
        with TestClient(app) as client:
            r = client.post("/admin/reload")
            assert r.status_code == 409 and "not an intents directory" in r.json()["error"]


@pytest.mark.real
def test_reload_through_the_real_encoder_and_faiss(
    intents: Path, real_encoder: SentenceTransformerEncoder
) -> None:
    with ServingRouter.load(intents, encoder=real_encoder, build_if_needed=True) as holder:
        (intents / "billing.yaml").write_text(BILLING)
        assert holder.reload("test").ok
        routed = holder.router.route("there is a double charge on my invoice")
        assert routed.intent == "billing"
        assert routed.index_version == holder.router.manifest.version
