"""The embedding adapter: its math on small synthetic vectors, its place in the index
(manifest, staleness, determinism), bad input, config errors, and the real encoder."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from modeltriage import AdapterError, ConfigError, HashingEncoder, Router, StaleIndexError
from modeltriage.core import adapter as A
from modeltriage.core.config import AdapterSettings
from modeltriage.core.index import (
    build_in_memory,
    exemplar_rows,
    index_is_current,
    load_index,
    read_manifest,
    train_settings,
)
from modeltriage.core.intents import load_intents
from modeltriage.core.vector_index import FaissIndex
from modeltriage.learn.checks import check_index
from modeltriage.loading import build_index
from tests.conftest import ROUTER_YAML, TINY_INTENTS, TORCH_BACKEND, write_intents

# The fake encoder stands for the torch backend: `check` compares router.yaml's with it.
ADAPTER_ON = (
    ROUTER_YAML.replace("adapter: {enabled: false}", "adapter: {enabled: true, folds: 2}")
    + TORCH_BACKEND
)


def _blobs(
    seed: int = 0, intents: int = 4, per: int = 12, dim: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Intents one axis each, plus loud noise in four nuisance directions that every
    intent shares: raw cosines mix the intents up, a learned map shrinks the noise."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((intents, dim))
    centres[:, :intents] = np.eye(intents)
    scale = np.full(dim, 0.15)
    scale[intents : intents + 4] = 2.0
    x = centres.repeat(per, axis=0) + rng.normal(size=(intents * per, dim)) * scale
    return A.normalise_rows(x), np.arange(intents).repeat(per)


def _settings(**changes: object) -> A.TrainSettings:
    return train_settings(AdapterSettings.model_validate({"folds": 2, **changes}))


def test_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    x = A.normalise_rows(rng.normal(size=(20, 6))).astype(np.float64)
    onehot = np.eye(3)[rng.integers(0, 3, 20)]
    w, proxies = np.eye(6) + 0.1 * rng.normal(size=(6, 6)), rng.normal(size=(3, 6))
    anchor = np.eye(6)
    loss, dw, dp = A._loss_and_grads(x, onehot, w, proxies, 0.3, anchor)  # type: ignore[arg-type]
    for matrix, grad in ((w, dw), (proxies, dp)):
        matrix[1, 2] += 1e-6
        moved, _, _ = A._loss_and_grads(x, onehot, w, proxies, 0.3, anchor)  # type: ignore[arg-type]
        matrix[1, 2] -= 1e-6
        assert (moved - loss) / 1e-6 == pytest.approx(grad[1, 2], rel=1e-3, abs=1e-6)


def test_the_adapter_separates_what_raw_cosines_confuse() -> None:
    x, y = _blobs()
    held_x, held_y = _blobs(seed=1)
    adapter = A.train_adapter(x, [f"i{j}" for j in y], _settings())

    def top1(keys: np.ndarray, queries: np.ndarray) -> float:
        return float(np.mean(y[(queries @ keys.T).argmax(axis=1)] == held_y))

    assert top1(adapter.apply(x), adapter.apply(held_x)) > top1(x, held_x) + 0.15
    assert adapter.cv_accuracy is not None and adapter.cv_identity_accuracy is not None
    assert adapter.cv_accuracy > adapter.cv_identity_accuracy
    assert adapter.weight_decay in AdapterSettings().weight_decays
    assert np.allclose(np.linalg.norm(adapter.apply(held_x), axis=1), 1.0, atol=1e-5)


def test_training_lowers_the_loss_deterministically_from_the_seed() -> None:
    x, y = _blobs()
    names = list(map(str, y))
    first = A.train_adapter(x, names, _settings(weight_decay=0.001))
    again = A.train_adapter(x, names, _settings(weight_decay=0.001))
    other_seed = A.train_adapter(x, names, _settings(weight_decay=0.001, seed=1, batch_size=8))
    assert first.digest == again.digest != other_seed.digest
    fit = A.fit_matrix(x, y, train_settings(AdapterSettings(weight_decay=0.001)))
    assert fit.final_loss < fit.initial_loss


def test_cross_validation_on_several_cores_chooses_as_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = _blobs(intents=6, per=20)
    settings = dataclasses.replace(_settings(folds=3), weight_decays=(0.1, 0.001, 0.0001))
    by_cores = {}
    for cores in (1, 4):
        monkeypatch.setattr(A, "available_cores", lambda cores=cores: cores)
        by_cores[cores] = A.cross_validate(x, y, settings)
        adapter = A.train_adapter(x, list(map(str, y)), settings)
        by_cores[cores] += (adapter.digest,)
    assert by_cores[1] == by_cores[4]


def test_folds_are_stratified_and_seeded() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [2])
    folds = A.folds_of(labels, 3, seed=0)
    for label in (0, 1):
        assert sorted(np.bincount(folds[labels == label], minlength=3)) == (
            [2, 2, 2] if label == 0 else [1, 1, 1]
        )
    assert np.array_equal(folds, A.folds_of(labels, 3, seed=0))
    assert not np.array_equal(A.folds_of(np.zeros(30, dtype=np.int64), 3, 1), folds[:1])


def test_cv_sample_keeps_every_intent() -> None:
    labels = np.arange(5).repeat(100)
    kept = A._cv_subset(labels, 50, seed=0)
    assert len(kept) == 50 and set(np.bincount(labels[kept])) == {10}


def test_one_intent_is_the_identity_map() -> None:
    # Nothing to tell apart: the loss is 0 from the start, so the trained map is W = I.
    x, _ = _blobs(intents=1, per=3)
    adapter = A.train_adapter(x, ["a", "a", "a"], _settings())
    np.testing.assert_array_equal(adapter.matrix, np.eye(x.shape[1], dtype=np.float32))
    np.testing.assert_allclose(adapter.apply(x), A.normalise_rows(x), atol=1e-6)


def test_vectors_that_are_not_finite_are_an_adapter_error() -> None:
    x, y = _blobs()
    x[3, 2] = np.nan
    with pytest.raises(AdapterError, match="not finite"):
        A.train_adapter(x, list(map(str, y)), _settings())


def test_a_rising_loss_is_an_adapter_error() -> None:
    x, y = _blobs()
    with pytest.raises(AdapterError, match="did not converge"):
        # A learning rate this large overshoots from the very first step.
        A.checked_fit(x, y, _settings(epochs=2, learning_rate=1.0, weight_decay=100.0))


def test_single_exemplar_and_shared_exemplars_still_build() -> None:
    x, y = _blobs(intents=3, per=4)
    names = [f"i{j}" for j in y] + ["lonely", "twin-a", "twin-b"]
    x = np.vstack([x, x[:1], x[4:5], x[4:5]])
    adapter = A.train_adapter(x, names, _settings())
    assert np.all(np.isfinite(adapter.matrix))


def test_two_intents_of_ten_exemplars() -> None:
    x, y = _blobs(intents=2, per=10)
    adapter = A.train_adapter(x, list(map(str, y)), _settings())
    assert adapter.cv_accuracy is not None and adapter.cv_accuracy >= adapter.cv_identity_accuracy  # type: ignore[operator]


# --- through the index and the router -----------------------------------------------


def test_build_records_the_adapter_and_load_applies_it(tmp_path: Path) -> None:
    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS, ADAPTER_ON)
    encoder = HashingEncoder()
    manifest = build_index(intents_dir, encoder)
    build, _ = read_manifest(intents_dir / ".index")
    matrix = np.load(build / "adapter.npy")
    assert manifest.adapter == AdapterSettings(enabled=True, folds=2).key
    assert manifest.adapter_digest == A.matrix_digest(matrix)
    router = Router.load(intents_dir, encoder=encoder, log=False)
    in_memory = Router.in_memory(load_intents(intents_dir), encoder)
    text = "when do you open on sunday"
    assert router.route(text).intent == in_memory.route(text).intent == "hours"
    # The same rows, rebuilt: the same map (deterministic from the seed).
    assert build_index(intents_dir, encoder).adapter_digest == manifest.adapter_digest


def test_a_changed_adapter_setting_or_file_is_refused_like_a_stale_index(tmp_path: Path) -> None:
    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS, ADAPTER_ON)
    encoder = HashingEncoder()
    build_index(intents_dir, encoder)
    rows = exemplar_rows(load_intents(intents_dir).intents)
    (intents_dir / "router.yaml").write_text(ROUTER_YAML, encoding="utf-8")  # adapter off
    with pytest.raises(StaleIndexError, match="built with adapter 'softmax:"):
        Router.load(intents_dir, encoder=encoder, log=False)
    assert check_index(intents_dir).problem is not None
    assert not index_is_current(intents_dir / ".index", rows, encoder.model_id)
    (intents_dir / "router.yaml").write_text(ADAPTER_ON, encoding="utf-8")
    assert check_index(intents_dir).current
    build, _ = read_manifest(intents_dir / ".index")
    # Not the identity: a tiny set may train to (nearly) the identity, which would match.
    np.save(build / "adapter.npy", 2 * np.eye(encoder.dim, dtype=np.float32))
    settings = load_intents(intents_dir).config
    with pytest.raises(StaleIndexError, match="not the one its manifest records"):
        load_index(
            intents_dir / ".index",
            rows,
            encoder,
            None,
            settings.scoring,
            adapter_settings=settings.adapter,
        )
    (build / "adapter.npy").unlink()
    with pytest.raises(StaleIndexError, match=r"lacks a readable adapter\.npy"):
        load_index(
            intents_dir / ".index",
            rows,
            encoder,
            None,
            settings.scoring,
            adapter_settings=settings.adapter,
        )


class _NotFiniteEncoder(HashingEncoder):
    """Vectors with a NaN: what a broken encoder hands the adapter."""

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        vectors = super().encode(texts)
        vectors[:, 0] = np.nan
        return vectors


def test_a_failed_adapter_writes_no_index(tmp_path: Path) -> None:
    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS, ADAPTER_ON)
    with pytest.raises(AdapterError, match="not finite"):
        build_index(intents_dir, _NotFiniteEncoder())
    assert not (intents_dir / ".index" / "CURRENT").exists()


def test_check_warns_by_name_about_what_the_adapter_cannot_learn(tmp_path: Path) -> None:
    files = {
        **TINY_INTENTS,
        "lonely.yaml": "name: lonely\ndifficulty: easy\nexemplars: [just me]\n",
        "twin.yaml": TINY_INTENTS["hours.yaml"].replace("name: hours", "name: twin"),
    }
    intents_dir = write_intents(tmp_path / "intents", files, ADAPTER_ON)
    build_index(intents_dir, HashingEncoder())
    notes = "\n".join(check_index(intents_dir).notes)
    assert "lonely" in notes and "one exemplar" in notes
    assert "hours" in notes and "twin" in notes and "same exemplars" in notes


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("adapter: {enabled: maybe}", "adapter.enabled"),
        ("adapter: {weight_decay: -1}", "adapter.weight_decay"),
        ("adapter: {folds: 1}", "adapter.folds"),
        ("adapter: {epoch: 3}", "adapter.epoch"),
    ],
)
def test_adapter_config_errors_name_file_and_line(
    make_intents: Callable[..., Path], snippet: str, message: str
) -> None:
    yaml = ROUTER_YAML.replace("adapter: {enabled: false}", snippet)
    line = (
        yaml.splitlines().index(next(x for x in yaml.splitlines() if x.startswith("adapter"))) + 1
    )
    intents_dir = make_intents(TINY_INTENTS, router_yaml=yaml)
    with pytest.raises(ConfigError) as info:
        load_intents(intents_dir)
    assert f"router.yaml:{line}" in str(info.value) and message in str(info.value)


def test_the_manifest_of_an_index_without_adapter_fields_still_reads(tmp_path: Path) -> None:
    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS)
    build_index(intents_dir, HashingEncoder())
    build, _ = read_manifest(intents_dir / ".index")
    data = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    for key in [k for k in data if k.startswith("adapter")]:
        del data[key]
    (build / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    assert read_manifest(intents_dir / ".index")[1].adapter == "off"
    assert Router.load(intents_dir, encoder=HashingEncoder(), log=False).manifest.adapter == "off"


@pytest.mark.real
def test_real_encoder_through_faiss(tmp_path: Path) -> None:
    from modeltriage import SentenceTransformerEncoder

    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS, ADAPTER_ON)
    encoder = SentenceTransformerEncoder()
    build_index(intents_dir, encoder)
    router = Router.load(intents_dir, encoder=encoder, log=False)
    assert router.manifest.adapter.startswith("softmax:")
    rows = exemplar_rows(router.intent_set.intents)
    loaded = build_in_memory(
        rows, encoder, FaissIndex, None, adapter_settings=router.config.adapter
    )
    assert loaded.manifest.adapter_digest == router.manifest.adapter_digest
    decision = router.route(
        "my python code raises a KeyError", __import__("modeltriage").RouteOptions(explain=True)
    )
    assert decision.intent == "code"
    assert "adapter" in decision.explanation


def test_one_intent_builds_with_the_identity_and_check_says_so(tmp_path: Path) -> None:
    one_intent = {"hours.yaml": TINY_INTENTS["hours.yaml"]}
    intents_dir = write_intents(tmp_path / "intents", one_intent, ADAPTER_ON)
    manifest = build_index(intents_dir, HashingEncoder())
    build, _ = read_manifest(intents_dir / ".index")
    matrix = np.load(build / "adapter.npy")
    assert manifest.adapter_digest == A.matrix_digest(np.eye(matrix.shape[0]))
    router = Router.load(intents_dir, encoder=HashingEncoder(), log=False)
    assert router.route("what are your opening hours").intent == "hours"
    assert any("one intent" in note for note in check_index(intents_dir).notes)
