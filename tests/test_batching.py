"""The service's micro-batcher: gathering, the bound on a lone request's wait, 503 when
full, errors per request. Driven by a fake ``route_many``; then through the app."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from modeltriage import Decision, HashingEncoder, OverloadedError, RouteOptions, Router
from modeltriage.core.intents import load_intents
from modeltriage.errors import InputError
from modeltriage.http.batcher import MicroBatcher, Request
from tests.conftest import ROUTER_YAML, TINY_INTENTS, Serve, write_intents


class FakeRoute:
    """Records each call's texts; refuses a text "bad"; can hold calls until released."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, requests: Sequence[Request]) -> list[Decision | InputError]:
        self.release.wait(10)
        self.calls.append([text for text, _ in requests])
        return self.router.route_many(requests, log=False)


@pytest.fixture
def fake(fake_router: Router) -> FakeRoute:
    return FakeRoute(fake_router)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def started(fake: FakeRoute, **kw: float) -> MicroBatcher:
    settings = {"wait_s": 0.05, "max_batch": 8, "queue_size": 100, **kw}
    batcher = MicroBatcher(
        fake,
        wait_s=float(settings["wait_s"]),
        max_batch=int(settings["max_batch"]),
        queue_size=int(settings["queue_size"]),
    )
    batcher.start()
    return batcher


def test_concurrent_requests_share_one_call(fake: FakeRoute) -> None:
    async def go() -> list[list[Decision | InputError]]:
        batcher = await started(fake)
        texts = ["when do you open", "refund my order", "python KeyError"]
        out = await asyncio.gather(*(batcher.route([(t, RouteOptions())]) for t in texts))
        await batcher.close()
        return out

    results = run(go())
    assert fake.calls == [["when do you open", "refund my order", "python KeyError"]]
    assert [r[0].intent for r in results] == ["hours", "refund", "code"]  # type: ignore[union-attr]


def test_a_full_batch_goes_without_waiting(fake: FakeRoute) -> None:
    async def go() -> float:
        batcher = await started(fake, wait_s=5.0, max_batch=2)
        begun = time.perf_counter()
        await asyncio.gather(*(batcher.route([(t, RouteOptions())]) for t in ("a b", "c d")))
        took = time.perf_counter() - begun
        await batcher.close()
        return took

    assert run(go()) < 2.0
    assert fake.calls == [["a b", "c d"]]


def test_a_lone_request_waits_no_longer_than_the_bound(fake: FakeRoute) -> None:
    async def go() -> float:
        batcher = await started(fake, wait_s=0.2)
        begun = time.perf_counter()
        await batcher.route([("when do you open", RouteOptions())])
        took = time.perf_counter() - begun
        await batcher.close()
        return took

    took = run(go())
    assert 0.2 <= took < 1.5  # the wait, plus routing on a loaded machine


def test_a_batch_request_is_never_split(fake: FakeRoute) -> None:
    async def go() -> None:
        batcher = await started(fake, max_batch=2)
        many = [(f"text {i}", RouteOptions()) for i in range(5)]
        one = [("when do you open", RouteOptions())]
        await asyncio.gather(batcher.route(many), batcher.route(one))
        await batcher.close()

    run(go())
    assert [len(c) for c in fake.calls] == [5, 1]


def test_a_full_queue_is_overloaded(fake: FakeRoute) -> None:
    async def go() -> None:
        fake.release.clear()  # the first batch blocks in its thread
        batcher = await started(fake, wait_s=0.0, max_batch=1, queue_size=2)
        first = asyncio.create_task(batcher.route([("a", RouteOptions())]))
        await asyncio.sleep(0.1)  # taken: the queue is empty again, the worker busy
        waiting = [asyncio.create_task(batcher.route([(t, RouteOptions())])) for t in "bc"]
        await asyncio.sleep(0.05)
        with pytest.raises(OverloadedError, match="queue_size"):
            await batcher.route([("d", RouteOptions())])
        fake.release.set()
        await asyncio.gather(first, *waiting)
        await batcher.close()

    run(go())
    assert fake.calls == [["a"], ["b"], ["c"]]


def test_errors_stay_with_their_request(fake: FakeRoute) -> None:
    async def go() -> list[list[Decision | InputError]]:
        batcher = await started(fake)
        out = await asyncio.gather(
            batcher.route([("when do you open", RouteOptions())]),
            batcher.route([("", RouteOptions())]),
            batcher.route([("refund", RouteOptions(step="nope"))]),
        )
        await batcher.close()
        return out

    ok, empty, step = run(go())  # type: ignore[misc]
    assert isinstance(ok[0], Decision)
    assert isinstance(empty[0], InputError) and isinstance(step[0], InputError)
    assert "unknown step" in str(step[0])
    assert len(fake.calls) == 1


def test_a_failed_call_fails_its_callers_only(fake_router: Router) -> None:
    calls = 0

    def flaky(requests: Sequence[Request]) -> list[Decision | InputError]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("encoder crashed")
        return fake_router.route_many(requests, log=False)

    async def go() -> None:
        batcher = MicroBatcher(flaky, wait_s=0.0, max_batch=8, queue_size=10)
        batcher.start()
        with pytest.raises(RuntimeError, match="encoder crashed"):
            await batcher.route([("a", RouteOptions())])
        (decision,) = await batcher.route([("when do you open", RouteOptions())])
        assert isinstance(decision, Decision)
        await batcher.close()

    run(go())


def test_route_many_keeps_each_requests_options(tiny_dir: Path) -> None:
    router_yaml = ROUTER_YAML + "steps:\n  draft: {tier: small}\n"
    intents = write_intents(tiny_dir.parent / "steps", TINY_INTENTS, router_yaml)
    router = Router.in_memory(load_intents(intents), HashingEncoder(), exact_numpy=True)
    text = "debug this javascript promise that never resolves"
    plain, stepped, explained = router.route_many(
        [
            (text, RouteOptions()),
            (text, RouteOptions(step="draft")),
            (text, RouteOptions(explain=True)),
        ]
    )
    alone = router.route(text)
    assert isinstance(plain, Decision) and plain.model == alone.model and not plain.neighbours
    assert isinstance(stepped, Decision) and stepped.tier == "small"
    assert isinstance(explained, Decision) and explained.neighbours


def test_service_answers_503_with_retry_after(fake_router: Router, serve: Serve) -> None:
    client = serve(fake_router)
    batcher = client.app.state.batcher  # type: ignore[attr-defined]
    batcher._queue_size = 0  # every request finds the queue full
    batcher._queued = 1
    response = client.post("/route", json={"text": "when do you open"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "queue_size" in response.json()["detail"]
    batcher._queued = 0


def test_healthz_shows_batching_and_the_query_cache(fake_router: Router, serve: Serve) -> None:
    client = serve(fake_router)
    for _ in range(3):
        assert client.post("/route", json={"text": "when do you open"}).status_code == 200
    health = client.get("/healthz").json()
    assert health["query_cache"]["hits"] == 2 and health["query_cache"]["misses"] == 1
    assert health["query_cache"]["hit_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert health["batching"]["routed"] == 3 and health["batching"]["queued"] == 0


def test_search_threads_are_set_per_thread_and_configured() -> None:
    import faiss

    from modeltriage.core.config import ServingSettings
    from modeltriage.core.vector_index import limit_search_threads

    assert ServingSettings().search_threads == 1
    assert ServingSettings(search_threads=None).search_threads is None
    for bad in (0, -1, 10**6):
        with pytest.raises(ValueError):
            ServingSettings(search_threads=bad)
    seen: dict[str, int] = {}

    def limited() -> None:
        limit_search_threads(1)
        seen["limited"] = faiss.omp_get_max_threads()

    def other() -> None:
        seen["other"] = faiss.omp_get_max_threads()

    before = faiss.omp_get_max_threads()
    for target in (limited, other):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    # OpenMP keeps the setting per thread: the service sets it where the batch searches.
    assert seen["limited"] == 1
    assert seen["other"] == before == faiss.omp_get_max_threads()
