"""The embedding caches: exemplar vectors kept between builds, and the LRU of requests."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from modeltriage import HashingEncoder, Router, build_index, load_intents
from modeltriage.core.encoders import Vectors
from modeltriage.core.query_cache import QueryCache
from modeltriage.core.vector_cache import CachedExemplarEncoder, cache_file
from tests.conftest import ROUTER_YAML, TINY_INTENTS


class CountingEncoder(HashingEncoder):
    """The hashing fake, counting the texts it really encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.encoded.extend(texts)
        return super().encode(texts)


def test_rebuild_embeds_only_changed_exemplars(tiny_dir: Path) -> None:
    encoder = CountingEncoder()
    build_index(tiny_dir, encoder=encoder)
    assert len(encoder.encoded) == 9
    encoder.encoded.clear()
    hours = tiny_dir / "hours.yaml"
    hours.write_text(
        hours.read_text(encoding="utf-8").replace("what time do you close today", "closing time"),
        encoding="utf-8",
    )
    manifest = build_index(tiny_dir, encoder=encoder)
    assert encoder.encoded == ["closing time"]
    assert manifest.exemplars == 9
    router = Router.load(tiny_dir, encoder=encoder, log=False)
    assert router.route("closing time").intent == "hours"


def test_cached_vectors_equal_fresh_ones(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    texts = ["a b c", "d e f", "a b c"]
    first = CachedExemplarEncoder(encoder, tmp_path).encode(texts)
    again = CachedExemplarEncoder(encoder, tmp_path)
    assert np.array_equal(again.encode(texts), first) and again.embedded == 0
    assert np.array_equal(first, encoder.encode(texts))


def test_another_encoder_does_not_reuse_the_vectors(tmp_path: Path) -> None:
    CachedExemplarEncoder(HashingEncoder(64), tmp_path).encode(["a b"])
    other = CachedExemplarEncoder(HashingEncoder(32), tmp_path)
    assert other.encode(["a b"]).shape == (1, 32) and other.embedded == 1


def test_a_damaged_cache_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    encoder = HashingEncoder()
    path = cache_file(tmp_path, encoder.model_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a numpy file")
    cached = CachedExemplarEncoder(encoder, tmp_path)
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(cached.encode(["a b"]), encoder.encode(["a b"]))
    assert cached.embedded == 1 and "ignoring the exemplar vector cache" in caplog.text


def test_an_unwritable_cache_warns_once_and_builds(
    tiny_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index_dir = tiny_dir / ".index"
    index_dir.mkdir()
    (index_dir / "vectors").write_text("a file where the cache folder goes", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        manifest = build_index(tiny_dir, encoder=HashingEncoder())
    assert manifest.exemplars == 9
    warnings = [r for r in caplog.records if "cannot write the exemplar vector cache" in r.message]
    assert len(warnings) == 1


def test_query_cache_serves_repeats_and_evicts_the_oldest() -> None:
    encoder = CountingEncoder()
    cache = QueryCache(encoder, capacity=2)
    first = cache.encode(["a", "b", "a"])
    assert encoder.encoded == ["a", "b"]
    assert np.array_equal(first, encoder.encode(["a", "b", "a"]))
    encoder.encoded.clear()
    cache.encode(["a"])  # a hit: "a" is now the newest
    cache.encode(["c"])  # evicts "b"
    cache.encode(["b", "a"])
    assert encoder.encoded == ["c", "b"]
    stats = cache.stats()
    assert (stats.size, stats.capacity) == (2, 2)
    # The repeat inside the first call is a miss too: it is encoded in that call.
    assert (stats.hits, stats.misses) == (2, 5) and stats.hit_rate == pytest.approx(2 / 7)


def test_query_cache_off() -> None:
    encoder = CountingEncoder()
    cache = QueryCache(encoder, capacity=0)
    cache.encode(["a"])
    cache.encode(["a"])
    assert encoder.encoded == ["a", "a"] and cache.stats().hit_rate is None


def test_router_counts_repeated_requests(fake_router: Router) -> None:
    for _ in range(4):
        fake_router.route("when do you open", log=False)
    assert fake_router.query_cache.hits == 3


def test_the_cache_size_is_configured(make_intents: Callable[..., Path]) -> None:
    intents = make_intents(TINY_INTENTS, ROUTER_YAML + "serving: {query_cache_size: 0}\n")
    router = Router.in_memory(load_intents(intents), HashingEncoder())
    router.route("when do you open", log=False)
    assert router.query_cache.capacity == 0 and router.query_cache.hits == 0
