"""lint's exact all-pairs search (learn.all_pairs) against the straightforward one: the
index searched with every stored vector. Same neighbours, so the same findings."""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from modeltriage import HashingEncoder, Router
from modeltriage.core.encoders import Vectors, normalise
from modeltriage.core.intents import load_intent_documents
from modeltriage.core.vector_index import NumpyIndex
from modeltriage.learn.all_pairs import self_search
from modeltriage.learn.lint import index_for_lint, is_exact, lint_loaded

from .conftest import ROUTER_YAML


def _vectors(seed: int, n: int, dim: int = 8, duplicates: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Clustered, sorted by cluster like an index's rows, plus exact copies (ties).
    centres = rng.normal(size=(max(1, n // 10), dim))
    rows = centres[np.sort(rng.integers(0, len(centres), size=n))] + rng.normal(size=(n, dim))
    for _ in range(duplicates):
        rows[rng.integers(n)] = rows[rng.integers(n)]
    return normalise(rows.astype(np.float32))


@pytest.mark.parametrize("block", [1, 3, 7, 16, 2048])
@pytest.mark.parametrize(("n", "k"), [(1, 1), (5, 5), (40, 6), (97, 21), (97, 200)])
def test_self_search_equals_the_exact_index(n: int, k: int, block: int) -> None:
    """Blocks narrower than k, wider than n, and ties: the numpy index's answer, up to
    the order of exact copies (their float32 dot products differ in the last bit
    between matrix shapes, so either order is a correct sort)."""
    vectors = _vectors(n * 31 + k, n, duplicates=n // 4)
    want_sims, want_ids = NumpyIndex(vectors).search(vectors, k)
    sims, ids = self_search(vectors, k, block=block)
    np.testing.assert_allclose(sims, want_sims, rtol=0, atol=1e-6)
    exact = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    rows = np.arange(n)[:, None]
    np.testing.assert_allclose(exact[rows, ids], exact[rows, want_ids], rtol=0, atol=1e-6)
    assert all(len(set(r)) == min(n, k) for r in ids.tolist())
    # Where no copy ties, the very same rows.
    distinct = np.abs(np.diff(exact[rows, want_ids], axis=1)) > 1e-6
    alone = np.ones(ids.shape, dtype=bool)
    alone[:, 1:] &= distinct
    alone[:, :-1] &= distinct
    alone[:, -1] = False  # may tie with a row past k
    np.testing.assert_array_equal(ids[alone], want_ids[alone])
    assert sims.dtype == np.float32 and ids.dtype == np.int64


def test_self_search_of_nothing() -> None:
    sims, ids = self_search(np.zeros((0, 4), dtype=np.float32), 3)
    assert sims.shape == ids.shape == (0, 0)


class JitteredEncoder:
    """The hashing fake plus a little noise seeded by the text: texts with the same words
    get close but not identical vectors, as a real encoder gives them (exact ties would
    make any two correct searches differ in their order)."""

    def __init__(self) -> None:
        self.words = HashingEncoder(64)

    @property
    def model_id(self) -> str:
        return "jittered-hashing"

    @property
    def dim(self) -> int:
        return 64

    def encode(self, texts: Sequence[str]) -> Vectors:
        base = self.words.encode(texts)
        noise = np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).normal(size=64) for t in texts]
        )
        return normalise((base + 0.03 * noise).astype(np.float32))


def _overlapping_intents(make: Callable[..., Path], aggregation: str) -> Path:
    """Six intents whose exemplars share words, so lint finds misrouted exemplars,
    overlaps, near-duplicates and difficulty conflicts."""
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(30)]
    files = {}
    for i in range(6):
        own = words[i * 4 : i * 4 + 6]  # neighbours share two words
        exemplars = []
        for j in range(25):
            picked = [*rng.choice(own, 3), *rng.choice(words, 1)]
            text = " ".join(picked) + (" please" if j % 7 == 0 else "")
            level = ["easy", "moderate", "hard"][j % 3]
            exemplars.append({"text": text, "difficulty": level})
        unique = list({e["text"].casefold(): e for e in exemplars}.values())
        body = {"name": f"intent{i}", "difficulty": "moderate", "exemplars": unique}
        files[f"intent{i}.yaml"] = json.dumps(body)
    lint = "lint: {duplicate_cosine: 0.9, conflict_cosine: 0.7, overlap_share: 0.05}\n"
    scoring = f"scoring: {{top_k: 9, aggregation: {aggregation}}}"
    router_yaml = ROUTER_YAML.replace("scoring: {top_k: 10, aggregation: max}", scoring)
    assert scoring in router_yaml
    return make(files, router_yaml + lint)


@pytest.mark.parametrize("aggregation", ["vote", "max", "mean_top2"])
def test_fast_lint_gives_the_findings_of_a_plain_search(
    make_intents: Callable[..., Path], aggregation: str
) -> None:
    directory = _overlapping_intents(make_intents, aggregation)
    intent_set, docs = load_intent_documents(directory)
    loaded, _ = index_for_lint(intent_set, JitteredEncoder())
    assert is_exact(loaded)  # a flat FAISS index
    plain = dataclasses.replace(
        loaded, manifest=loaded.manifest.model_copy(update={"index_type": "searched"})
    )
    assert not is_exact(plain)
    fast, reference = lint_loaded(intent_set, loaded, docs), lint_loaded(intent_set, plain, docs)
    checks = {f.check for f in reference.findings}
    assert {"misrouted", "overlap", "duplicate", "difficulty_conflict"} <= checks, checks
    assert fast == reference


@pytest.mark.real
def test_shipped_intents_fast_lint_equals_a_plain_faiss_search(
    shipped_router: Router, shipped_copy: Path
) -> None:
    """Through the real encoder's saved vectors and the real flat FAISS index."""
    intent_set, docs = load_intent_documents(shipped_copy)
    loaded, note = index_for_lint(intent_set, None, build=False)
    assert note is None and is_exact(loaded)
    plain = dataclasses.replace(
        loaded, manifest=loaded.manifest.model_copy(update={"index_type": "searched"})
    )
    fast = lint_loaded(intent_set, loaded, docs)
    assert fast == lint_loaded(intent_set, plain, docs)
    assert fast.exemplars > 500 and fast.findings
