"""The router explorer's library (learn.explore*) and its endpoints (/explore, /ui), through
the fake encoder; the same numbers as `modeltriage tune`, and hostile input refused."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, InputError, Router, load_intents
from modeltriage.http.app import create_app
from modeltriage.http.auth import ApiKeys
from modeltriage.learn.explore import Settings, ThresholdExplorer, applied
from modeltriage.learn.explore_compare import compare
from modeltriage.learn.explore_samples import SampleCache, file_sample, filter_entries
from modeltriage.learn.tuning import Point, evaluate_point, with_thresholds
from modeltriage.learn.tuning_cases import labelled_cases
from modeltriage.log.memory import MemoryStore

from .conftest import REPO, SHIPPED_INTENTS

SAMPLE = REPO / "examples" / "traffic" / "support_day.jsonl"
SHIPPED = Settings(0.2, 0.6, 0.45)


@pytest.fixture(scope="module")
def shipped_fake() -> Router:
    return Router.in_memory(load_intents(SHIPPED_INTENTS), HashingEncoder(), exact_numpy=True)


@pytest.fixture(scope="module")
def explorer(shipped_fake: Router) -> ThresholdExplorer:
    found = labelled_cases(shipped_fake, SAMPLE, log=False)
    intents = {i.name: i for i in shipped_fake.intent_set.intents}
    return ThresholdExplorer(found.cases[:120], shipped_fake.config, intents, found.quality)


def _same(a: Point, b: Point) -> None:
    for name in ("cost_usd", "savings", "quality", "measured_share", "cascade_rate"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-12, abs=1e-15), name
    assert a.tier_share == b.tier_share
    assert a.flagship_share == b.flagship_share


@pytest.mark.parametrize(
    "settings",
    [
        SHIPPED,
        Settings(None, None, None),
        Settings(0.0, None, 0.2),
        Settings(0.5, 0.6, 0.45),
        Settings(0.1, 0.9, 0.6),
        Settings(None, 0.3, 0.3),
        Settings(0.2, 0.6, 0.45, difficulty_confidence=0.3),
        Settings(0.3, None, 0.5, difficulty_confidence=0.8),
    ],
)
def test_point_is_tunes_evaluate_point(explorer: ThresholdExplorer, settings: Settings) -> None:
    config = applied(explorer.config, settings)
    expected = evaluate_point(
        explorer.cases,
        config,
        explorer.intents,
        explorer.quality,
        settings.margin,
        settings.min_similarity,
        settings.difficulty_confidence,
    )
    _same(explorer.point(settings).point, expected)


def test_curve_is_tunes_grid(explorer: ThresholdExplorer) -> None:
    curve = explorer.curve(SHIPPED)
    assert all(p.margin is None or p.margin < 0.6 for p in curve)
    for p in curve[::9]:
        tuned = with_thresholds(explorer.config, p.margin, p.min_similarity)
        _same(
            p,
            evaluate_point(
                explorer.cases,
                tuned,
                explorer.intents,
                explorer.quality,
                p.margin,
                p.min_similarity,
            ),
        )


def test_plans_show_both_bounds(explorer: ThresholdExplorer) -> None:
    at = explorer.point(SHIPPED)
    assert at.planned_share > 0
    assert at.first_cost_per_request_usd < at.cost_per_request_usd
    no_plans = explorer.point(Settings(0.2, None, 0.45))
    assert no_plans.planned_share == 0 or no_plans.planned_share < at.planned_share
    assert sum(at.routed_tier_share.values()) == pytest.approx(1.0)


def test_ten_thousand_decisions_in_under_100_ms(explorer: ThresholdExplorer) -> None:
    big = ThresholdExplorer(
        explorer.cases * 84, explorer.config, explorer.intents, explorer.quality
    )
    assert len(big.cases) >= 10_000
    big.point(SHIPPED)  # decides each branch once
    timings = []
    for margin in (0.1, 0.2, 0.3, 0.4, 0.5):
        started = time.perf_counter()
        big.point(Settings(margin, 0.6, 0.45))
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(0.6, 0.6, 0.45), "cascade_margin .* must be above margin"),
        (Settings(1.5, None, 0.45), "margin 1.5 is out of range"),
        (Settings(0.2, 0.6, 1.5), "min_similarity"),
        (Settings(0.2, 0.6, 0.4, difficulty_confidence=0.0), "difficulty_confidence"),
    ],
)
def test_applied_refuses_what_the_router_would(settings: Settings, message: str) -> None:
    config = load_intents(SHIPPED_INTENTS).config
    with pytest.raises(InputError, match=message):
        applied(config, settings)


def test_compare_has_three_strategies_and_the_toggle(shipped_fake: Router) -> None:
    sample = file_sample(shipped_fake, SAMPLE)
    on = compare(sample, SHIPPED, plans=True, escalation_rate=1.0, requests_per_day=1000)
    off = compare(sample, SHIPPED, plans=False, escalation_rate=1.0, requests_per_day=1000)
    low = compare(sample, SHIPPED, plans=True, escalation_rate=0.0, requests_per_day=1000)
    assert [s.name for s in on.strategies] == ["routed", "always-flagship", "always-cheapest"]
    assert on.simulation.planned_rate > 0 and off.simulation.planned_rate == 0
    assert low.strategies[0].cost_per_day_usd < on.strategies[0].cost_per_day_usd
    # The routed cost is the explorer's (and so tune's) when every plan escalates.
    at = sample.explorer.point(SHIPPED)
    assert on.strategies[0].cost_per_day_usd == pytest.approx(at.cost_per_request_usd * 1000)
    flagship = on.strategies[1]
    assert flagship.tier_share == {"flagship": 1.0} and flagship.quality == 1.0


def test_unlabelled_file_has_no_quality(shipped_fake: Router, tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ("hi", "refund please")))
    sample = file_sample(shipped_fake, path)
    assert not sample.labelled
    assert math.isnan(sample.explorer.point(SHIPPED).point.quality)


def test_sample_cache_only_serves_its_directory(shipped_fake: Router, tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "support_day.jsonl")
    cache = SampleCache(shipped_fake, tmp_path)
    assert cache.default() == "support_day.jsonl"
    assert cache.get("") is cache.get("support_day.jsonl")
    for name in ("../x.jsonl", "/etc/passwd", "nope.jsonl"):
        with pytest.raises(InputError, match="unknown sample"):
            cache.get(name)
    with pytest.raises(InputError, match="logging is off"):
        cache.get("log")


# --- the endpoints ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_client(shipped_fake: Router) -> TestClient:
    """One service for the hostile-input tests, which change nothing."""
    with TestClient(create_app(router=shipped_fake, samples_dir=SAMPLE.parent)) as c:
        yield c


@pytest.fixture
def logged_router(tmp_path: Path) -> Router:
    target = tmp_path / "intents"
    shutil.copytree(SHIPPED_INTENTS, target, ignore=shutil.ignore_patterns(".index", ".log*"))
    router = Router.in_memory(
        load_intents(target), HashingEncoder(), exact_numpy=True, log=MemoryStore()
    )
    yield router
    router.close()


@pytest.fixture
def client(logged_router: Router) -> TestClient:
    with TestClient(create_app(router=logged_router, samples_dir=SAMPLE.parent)) as c:
        yield c


THRESHOLDS = {"margin": 0.2, "cascade_margin": 0.6, "min_similarity": 0.45}


def test_endpoints_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/explore/samples",
        "/explore/route",
        "/explore/sweep",
        "/explore/compare",
        "/explore/yaml",
        "/explore/apply",
        "/explore/decisions",
    ):
        assert path in paths


def test_page_is_served_with_nothing_from_elsewhere(client: TestClient) -> None:
    assert client.get("/ui", follow_redirects=False).status_code in (307, 308)
    page = client.get("/ui/")
    assert page.status_code == 200 and '<script type="module" src="app.js">' in page.text
    for name in ("index.html", "app.js", "style.css"):
        text = client.get(f"/ui/{name}").text
        assert "https://" not in text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_sweep_and_info(client: TestClient) -> None:
    info = client.get("/explore/samples").json()
    assert info["default_sample"] == "support_day.jsonl" and info["log"] is True
    assert info["thresholds"]["cascade_margin"] == 0.6 and info["examples"]
    swept = client.post("/explore/sweep", json={"thresholds": THRESHOLDS}).json()
    assert swept["cases"] == 400 and swept["labelled"] is True
    assert swept["curve"] and swept["frontier"] and swept["quality"] is not None
    moved = client.post(
        "/explore/sweep", json={"thresholds": {**THRESHOLDS, "margin": 0.5}, "curve": False}
    ).json()
    assert moved["savings"] != swept["savings"] and moved["curve"] == []


def test_explore_route_is_not_logged(client: TestClient, logged_router: Router) -> None:
    decision = client.post("/explore/route", json={"text": "what are your hours?"}).json()
    assert decision["neighbours"]
    assert client.get("/explore/decisions").json()["decisions"] == []


def test_log_listing_filters(client: TestClient) -> None:
    for text in ("what are your hours?", "I was charged twice for my order"):
        client.post("/route", json={"text": text})
    listed = client.get("/explore/decisions").json()["decisions"]
    assert len(listed) == 2
    intent = listed[0]["intent"]
    only = client.get("/explore/decisions", params={"intent": intent}).json()["decisions"]
    assert [d["intent"] for d in only] == [intent]
    assert client.get("/explore/decisions", params={"tier": "nope"}).json()["decisions"] == []
    logged = client.post(
        "/explore/sweep", json={"sample": "log", "last": 10, "thresholds": THRESHOLDS}
    ).json()
    assert logged["cases"] == 2


def test_filter_entries_treats_empty_intent_as_no_match() -> None:
    assert filter_entries([], intent="") == []


def test_apply_needs_an_admin_key(client: TestClient, logged_router: Router) -> None:
    config = logged_router.intent_set.source / "router.yaml"  # type: ignore[operator]
    original = config.read_text()
    body = {"thresholds": {"margin": 0.3, "cascade_margin": 0.7, "min_similarity": 0.4}}
    # No admin key configured (the `client` fixture's app): admin endpoints are off.
    assert client.post("/explore/apply", json=body).status_code == 403
    keys = ApiKeys(admin=("k1-0123456789abcdef", "k2-0123456789abcdef"))
    app = create_app(router=logged_router, samples_dir=SAMPLE.parent, keys=keys)
    with TestClient(app) as keyed:
        assert keyed.post("/explore/apply", json=body).status_code == 401
        wrong = keyed.post(
            "/explore/apply", json=body, headers={"authorization": "Bearer nope-0123456789abcdef"}
        )
        assert wrong.status_code == 401 and config.read_text() == original
        done = keyed.post(
            "/explore/apply", json=body, headers={"authorization": "Bearer k2-0123456789abcdef"}
        )
    yaml = client.post("/explore/yaml", json=body).json()["yaml"]
    assert yaml == "thresholds:\n  margin: 0.3\n  cascade_margin: 0.7\n  min_similarity: 0.4\n"
    assert done.status_code == 200, done.text
    written = load_intents(config.parent).config.thresholds
    assert (written.margin, written.cascade_margin, written.min_similarity) == (0.3, 0.7, 0.4)
    assert Path(done.json()["backup"]).read_text() == original
    assert "# Router config" in config.read_text()  # comments kept


def _body(thresholds: str = "", extra: str = "") -> bytes:
    base = '"margin": 0.2, "cascade_margin": 0.6, "min_similarity": 0.45'
    return ('{"thresholds": {' + base + thresholds + "}" + extra + "}").encode()


HOSTILE = [
    _body(', "margin": NaN'),
    _body(', "margin": Infinity'),
    _body(', "min_similarity": -Infinity'),
    _body(', "margin": 1e400'),
    _body(', "margin": 1' + "0" * 400),
    _body(', "margin": "0.2"'),
    _body(', "margin": true'),
    _body(', "extra": 1'),
    _body(', "margin": 0.7'),
    _body(', "margin": 1.5'),
    _body(', "difficulty_confidence": 0'),
    _body(extra=', "sample": "\\ud800"'),
    _body(extra=', "sample": "' + "x" * 5000 + '"'),
    _body(extra=', "sample": "../../etc/passwd"'),
    _body(extra=', "sample": ["support_day.jsonl"]'),
    _body(extra=', "requests_per_day": 1e30'),
    _body(extra=', "requests_per_day": -1'),
    _body(extra=', "requests_per_day": 1' + "0" * 400),
    _body(extra=', "last": 10000000, "sample": "log"'),
    _body(extra=', "escalation_rate": 2'),
    _body(extra=', "escalation_rate": NaN'),
    _body(extra=', "plans": "yes"'),
    b'{"thresholds": {"margin": 0.2}}',
    b'{"thresholds": null}',
    b"[]",
    b"not json",
]


@pytest.mark.parametrize("path", ["/explore/sweep", "/explore/compare", "/explore/yaml"])
@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_get_a_4xx(shared_client: TestClient, path: str, body: bytes) -> None:
    answer = shared_client.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["detail"]


@pytest.mark.parametrize(
    "params",
    ["limit=0", "limit=1e9", "limit=NaN", "reason=" + "x" * 5000, "intent=%ED%B2%80", "tier=%00"],
)
def test_hostile_log_queries_get_a_4xx_or_nothing(client: TestClient, params: str) -> None:
    answer = client.get(f"/explore/decisions?{params}")
    assert answer.status_code < 500
    if answer.status_code == 200:
        assert answer.json()["decisions"] == []


def test_hostile_route_texts(shared_client: TestClient) -> None:
    for body in (b'{"text": "\\udc80"}', b'{"text": 3}', b'{"text": ""}', b"{}"):
        answer = shared_client.post(
            "/explore/route", content=body, headers={"content-type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, answer.text


@pytest.mark.real
def test_real_encoder_point_is_tunes(shipped_router: Router) -> None:
    found = labelled_cases(shipped_router, SAMPLE, log=False)
    intents = {i.name: i for i in shipped_router.intent_set.intents}
    explorer = ThresholdExplorer(found.cases, shipped_router.config, intents, found.quality)
    for settings in (SHIPPED, Settings(0.3, 0.6, 0.45), Settings(0.5, None, 0.5)):
        config = applied(shipped_router.config, settings)
        expected = evaluate_point(
            found.cases, config, intents, found.quality, settings.margin, settings.min_similarity
        )
        _same(explorer.point(settings).point, expected)


def test_explore_endpoints_need_a_route_key_when_keys_are_set(logged_router: Router) -> None:
    keys = ApiKeys(route=("route-0123456789abcdef",))
    app = create_app(router=logged_router, samples_dir=SAMPLE.parent, keys=keys)
    with TestClient(app) as c:
        assert c.get("/explore/samples").status_code == 401
        ok = c.get("/explore/samples", headers={"authorization": "Bearer route-0123456789abcdef"})
        assert ok.status_code == 200
        assert c.get("/ui/").status_code == 200  # the page itself is static and open
