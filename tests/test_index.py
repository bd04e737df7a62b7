"""The on-disk index: manifest checks, staleness, atomic rebuilds. Fake encoder, real FAISS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modeltriage import (
    HashingEncoder,
    IndexMissingError,
    Router,
    StaleIndexError,
    build_index,
    load_intents,
)
from modeltriage.core.index import (
    build_in_memory,
    exemplar_rows,
    index_is_current,
    load_index,
    read_manifest,
    save_index,
)
from modeltriage.core.vector_index import FaissIndex, NumpyIndex


def test_build_then_load(tiny_dir: Path, fake_encoder: HashingEncoder) -> None:
    manifest = build_index(tiny_dir, encoder=fake_encoder)
    assert manifest.exemplars == 9 and manifest.intents == 3
    assert manifest.encoder == fake_encoder.model_id and manifest.dim == fake_encoder.dim
    router = Router.load(tiny_dir, encoder=fake_encoder)
    assert router.manifest == manifest
    assert router.route("when do you open").intent == "hours"
    on_disk = json.loads((read_manifest(tiny_dir / ".index")[0] / "manifest.json").read_text())
    assert on_disk["content_hash"] == manifest.content_hash


def test_missing_index_says_what_to_run(tiny_dir: Path, fake_encoder: HashingEncoder) -> None:
    with pytest.raises(IndexMissingError, match="run: modeltriage build"):
        Router.load(tiny_dir, encoder=fake_encoder)


def test_build_if_needed(tiny_dir: Path, fake_encoder: HashingEncoder) -> None:
    router = Router.load(tiny_dir, encoder=fake_encoder, build_if_needed=True)
    assert (tiny_dir / ".index" / "CURRENT").exists()
    assert router.route("refund my purchase").intent == "refund"


def test_edited_exemplars_make_the_index_stale(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    hours = tiny_dir / "hours.yaml"
    hours.write_text(hours.read_text() + "  - are you open on public holidays\n")
    with pytest.raises(StaleIndexError, match=r"stale.*run: modeltriage build"):
        Router.load(tiny_dir, encoder=fake_encoder)


def test_a_new_intent_file_makes_the_index_stale(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    (tiny_dir / "greet.yaml").write_text(
        "name: greet\ndifficulty: easy\nexemplars: [hello there]\n"
    )
    with pytest.raises(StaleIndexError):
        Router.load(tiny_dir, encoder=fake_encoder)
    build_index(tiny_dir, encoder=fake_encoder)
    assert Router.load(tiny_dir, encoder=fake_encoder).route("hello there").intent == "greet"


def test_prices_and_difficulties_apply_without_a_rebuild(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    router_yaml = tiny_dir / "router.yaml"
    router_yaml.write_text(
        router_yaml.read_text().replace("output_usd_per_mtok: 0.40", "output_usd_per_mtok: 0.50")
    )
    hours = tiny_dir / "hours.yaml"
    hours.write_text(hours.read_text().replace("difficulty: easy", "difficulty: hard"))
    decision = Router.load(tiny_dir, encoder=fake_encoder).route("what are your opening hours")
    assert (decision.intent, decision.difficulty, decision.tier) == ("hours", "hard", "flagship")


def test_another_encoder_is_refused(tiny_dir: Path, fake_encoder: HashingEncoder) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    with pytest.raises(StaleIndexError, match="built with encoder 'hashing-fake-256'"):
        Router.load(tiny_dir, encoder=HashingEncoder(dim=64))


class ExplodingFaiss(FaissIndex):
    def save(self, path: Path) -> None:
        path.write_bytes(b"half a file")
        raise OSError("disk full")


def test_a_crash_during_rebuild_leaves_the_previous_index(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    first = build_index(tiny_dir, encoder=fake_encoder)
    intent_set = load_intents(tiny_dir)
    rows = exemplar_rows(intent_set.intents)
    loaded = build_in_memory(rows, fake_encoder, FaissIndex)
    broken = type(loaded)(ExplodingFaiss(loaded.index._index), loaded.rows, loaded.manifest)  # type: ignore[attr-defined]
    with pytest.raises(OSError, match="disk full"):
        save_index(broken, intent_set.index_path)
    assert load_index(intent_set.index_path, rows, fake_encoder).manifest == first
    assert len(list((intent_set.index_path / "builds").iterdir())) == 1


def test_old_builds_are_pruned(tiny_dir: Path, fake_encoder: HashingEncoder) -> None:
    for _ in range(5):
        build_index(tiny_dir, encoder=fake_encoder)
    assert len(list((tiny_dir / ".index" / "builds").iterdir())) == 3
    assert Router.load(tiny_dir, encoder=fake_encoder).route("refund please").intent == "refund"


def test_index_is_current(tiny_dir: Path, fake_encoder: HashingEncoder) -> None:
    rows = exemplar_rows(load_intents(tiny_dir).intents)
    assert not index_is_current(tiny_dir / ".index", rows, fake_encoder.model_id)
    build_index(tiny_dir, encoder=fake_encoder)
    assert index_is_current(tiny_dir / ".index", rows, fake_encoder.model_id)
    assert not index_is_current(tiny_dir / ".index", rows[:-1], fake_encoder.model_id)


def test_faiss_and_numpy_indexes_agree(fake_encoder: HashingEncoder) -> None:
    texts = [f"text number {i} about topic {i % 7}" for i in range(200)]
    vectors = fake_encoder.encode(texts)
    queries = fake_encoder.encode(["topic 3", "number 42", "unrelated words"])
    f_scores, f_ids = FaissIndex.from_vectors(vectors).search(queries, 5)
    n_scores, n_ids = NumpyIndex.from_vectors(vectors).search(queries, 5)
    np.testing.assert_allclose(f_scores, n_scores, atol=1e-5)
    assert (f_ids[:, 0] == n_ids[:, 0]).all()


def test_k_larger_than_the_index(fake_encoder: HashingEncoder) -> None:
    index = FaissIndex.from_vectors(fake_encoder.encode(["a b", "c d"]))
    _, ids = index.search(fake_encoder.encode(["a"]), 10)
    assert ids.shape == (1, 2)


def test_another_long_text_view_makes_the_index_stale(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    router_yaml = tiny_dir / "router.yaml"
    router_yaml.write_text(
        router_yaml.read_text().replace(
            "scoring: {", "scoring: {long_text: tail, window_chars: 60, "
        )
    )
    with pytest.raises(StaleIndexError, match=r"'head' part of long texts.*'tail:60'"):
        Router.load(tiny_dir, encoder=fake_encoder)
    build_index(tiny_dir, encoder=fake_encoder)
    router = Router.load(tiny_dir, encoder=fake_encoder)
    assert router.manifest.text_view == "tail:60"
    # the tail of a long request is what gets matched
    assert router.route("blah " * 100 + "refund my purchase please").intent == "refund"
