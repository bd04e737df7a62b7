"""The out-of-scope floor calibrated on held-out exemplars: its pure steps (table tests),
the policy's no_match with its explanation, its place in the index (manifest, staleness),
config errors, and the real encoders through FAISS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modeltriage import ConfigError, HashingEncoder, Router, StaleIndexError
from modeltriage.core import out_of_scope as O
from modeltriage.core.adapter import normalise_rows
from modeltriage.core.config import OutOfScopeSettings
from modeltriage.core.intents import load_intents
from modeltriage.core.policy import decide
from modeltriage.loading import build_index
from tests.conftest import ROUTER_YAML, TINY_INTENTS, TORCH_BACKEND, write_intents

from .test_policy import CONFIG, INTENTS, n

PIN = "out_of_scope: {calibrate: false}"
CALIBRATED = ROUTER_YAML.replace(PIN, "out_of_scope: {calibrate: true, reject_share: 0.1}")


@pytest.mark.parametrize(
    ("labels", "share", "held_per_intent"),
    [
        ([0] * 10 + [1] * 10, 0.1, {0: 1, 1: 1}),
        ([0] * 10 + [1] * 20, 0.2, {0: 2, 1: 4}),
        ([0] * 2 + [1] * 3, 0.1, {0: 1, 1: 1}),  # at least one...
        ([0] * 2 + [1] * 2, 0.5, {0: 1, 1: 1}),  # ...never the last
        ([0] + [1] * 4, 0.5, {0: 0, 1: 2}),  # a single exemplar holds nothing out
    ],
)
def test_held_out_rows_are_stratified(
    labels: list[int], share: float, held_per_intent: dict[int, int]
) -> None:
    array = np.array(labels)
    held = O.held_out_rows(array, share, seed=0)
    assert {c: int(held[array == c].sum()) for c in held_per_intent} == held_per_intent
    assert np.array_equal(held, O.held_out_rows(array, share, seed=0))


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [
        ([0.9, 0.5, 0.7, 0.6], 0.0, 0.5),  # share 0 rejects none of them
        ([0.9, 0.5, 0.7, 0.6], 0.5, 0.6),  # the lower of the two middle values
        ([0.9, 0.5, 0.7, 0.6], 1.0, 0.9),
        ([0.3], 0.05, 0.3),
    ],
)
def test_floor_is_the_lower_quantile(values: list[float], share: float, expected: float) -> None:
    assert O.floor_at(np.array(values), share) == pytest.approx(expected)


def test_floor_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no held-out"):
        O.floor_at(np.zeros(0), 0.05)


def test_top_similarities_in_chunks() -> None:
    rng = np.random.default_rng(0)
    keys, queries = (
        normalise_rows(rng.normal(size=(50, 8))),
        normalise_rows(rng.normal(size=(5000, 8))),
    )
    assert np.allclose(O.top_similarities(keys, queries), (queries @ keys.T).max(axis=1), atol=1e-6)


def _clusters(intents: int = 3, per: int = 20, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:intents]
    x = centres.repeat(per, axis=0) + 0.2 * rng.normal(size=(intents * per, 8))
    return normalise_rows(x), np.arange(intents).repeat(per)


def test_calibration_rejects_about_its_share_of_unseen_in_scope_vectors() -> None:
    x, labels = _clusters(per=200)
    calibration = O.calibrate_floor(
        x, labels, lambda k, y: None, reject_share=0.05, hold_out=0.2, seed=0
    )
    assert calibration is not None and calibration.held_out == 120
    fresh, _ = _clusters(per=200, seed=2)  # requests: the same intents, unseen vectors
    rejected = (O.top_similarities(x, fresh) < calibration.floor).mean()
    assert 0.0 < rejected < 0.15
    assert calibration.floor < calibration.median


def test_calibration_fits_the_map_on_the_kept_exemplars_only() -> None:
    x, labels = _clusters()
    seen: list[int] = []

    def fit(keys: np.ndarray, kept: np.ndarray) -> np.ndarray:
        seen.append(keys.shape[0])
        assert set(kept.tolist()) == {0, 1, 2}
        return 2 * np.eye(8, dtype=np.float32)  # a scaling: cosines unchanged

    with_map = O.calibrate_floor(x, labels, fit, reject_share=0.1, hold_out=0.1, seed=0)
    without = O.calibrate_floor(
        x, labels, lambda k, y: None, reject_share=0.1, hold_out=0.1, seed=0
    )
    assert seen == [54] and with_map == without


@pytest.mark.parametrize(
    "labels",
    [np.array([0, 1, 2]), np.array([0, 0, 0, 1])],  # nothing to hold out; one intent left
)
def test_no_calibration_without_held_out_rows_or_two_intents_left(labels: np.ndarray) -> None:
    x = normalise_rows(np.random.default_rng(0).normal(size=(labels.size, 4)))
    # [0,0,0,1]: intent 1 keeps its only exemplar, intent 0 holds out one: 2 intents left.
    result = O.calibrate_floor(x, labels, lambda k, y: None, reject_share=0.1, hold_out=0.5, seed=0)
    assert (result is None) == (labels.tolist() == [0, 1, 2])


@pytest.mark.parametrize(
    ("similarity", "floor", "min_similarity", "reason", "says"),
    [
        (0.50, 0.60, 0.2, "no_match", "out-of-scope floor 0.600"),
        (0.65, 0.60, 0.2, "confident", "matched"),
        (0.10, 0.60, 0.2, "no_match", "< min_similarity 0.2"),  # the user's floor is named
        (0.50, None, 0.2, "confident", "matched"),
        (0.50, 0.60, None, "no_match", "out-of-scope floor"),
    ],
)
def test_the_policy_turns_away_what_is_under_the_floor(
    similarity: float, floor: float | None, min_similarity: float | None, reason: str, says: str
) -> None:
    config = CONFIG.model_copy(
        update={
            "thresholds": CONFIG.thresholds.model_copy(update={"min_similarity": min_similarity})
        }
    )
    verdict = decide([n("hours", similarity)], config, INTENTS, 10, oos_floor=floor)
    assert verdict.reason == reason and says in verdict.explanation
    if reason == "no_match":
        assert verdict.intent is None and verdict.cascaded and verdict.tier == "flagship"


@pytest.mark.parametrize("score", ["similarity", "similarity+mahalanobis"])
def test_build_records_the_floor_and_routing_applies_it(tmp_path: Path, score: str) -> None:
    yaml = CALIBRATED.replace("min_similarity: 0.2", "min_similarity: null").replace(
        "reject_share: 0.1}", f"reject_share: 0.1, score: {score}}}"
    )
    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS, yaml + TORCH_BACKEND)
    encoder = HashingEncoder()
    manifest = build_index(intents_dir, encoder)
    assert manifest.out_of_scope == OutOfScopeSettings(reject_share=0.1, score=score).key  # type: ignore[arg-type]
    assert manifest.oos_floor is not None and manifest.oos_held_out == len(TINY_INTENTS)
    # 9 exemplars are too few for the Mahalanobis term (tests/test_oos_score.py): the
    # floor stays on the similarity whichever score is asked for.
    assert manifest.oos_score == "similarity"
    router = Router.load(intents_dir, encoder=encoder, log=False)
    decision = router.route("zebra quantum paperclip")
    assert decision.confidence < manifest.oos_floor
    assert decision.reason == "no_match" and "out-of-scope floor" in decision.explanation
    exemplar = load_intents(intents_dir).intents[0].exemplars[0].text
    assert router.route(exemplar).reason != "no_match"  # an exemplar is its own neighbour
    # Deterministic: the same rows and seed give the same floor.
    assert build_index(intents_dir, encoder).oos_floor == manifest.oos_floor


def test_single_exemplar_intents_build_without_a_floor_and_stay_current(tmp_path: Path) -> None:
    singles = {
        "a.yaml": "name: a\ndifficulty: easy\nexemplars: [what are your opening hours]\n",
        "b.yaml": "name: b\ndifficulty: easy\nexemplars: [I want a refund]\n",
    }
    intents_dir = write_intents(tmp_path / "intents", singles, CALIBRATED)
    encoder = HashingEncoder()
    manifest = build_index(intents_dir, encoder)
    assert manifest.out_of_scope != "off" and manifest.oos_floor is None
    router = Router.load(intents_dir, encoder=encoder, log=False)  # not stale
    assert router.manifest.built_at == manifest.built_at


def test_a_changed_setting_makes_the_index_stale(tmp_path: Path) -> None:
    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS, CALIBRATED)
    encoder = HashingEncoder()
    build_index(intents_dir, encoder)
    (intents_dir / "router.yaml").write_text(
        CALIBRATED.replace("reject_share: 0.1", "reject_share: 0.2"), encoding="utf-8"
    )
    with pytest.raises(StaleIndexError, match=r"out-of-scope floor .held-out:share=0\.1"):
        Router.load(intents_dir, encoder=encoder, log=False)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("out_of_scope: {reject_share: 0.9}", "less than or equal to 0.5"),
        ("out_of_scope: {hold_out: 0}", "greater than 0"),
        ("out_of_scope: {reject_share: .nan}", "finite number"),
        ("out_of_scope: {calibrate: true, floor: 0.3}", "unknown key"),
    ],
)
def test_config_errors_name_file_and_line(
    make_intents: Callable[..., Path], snippet: str, message: str
) -> None:
    yaml = ROUTER_YAML.replace(PIN, snippet)
    line = next(i for i, x in enumerate(yaml.splitlines(), 1) if x.startswith(snippet))
    with pytest.raises(ConfigError) as info:
        load_intents(make_intents(TINY_INTENTS, router_yaml=yaml))
    assert f"router.yaml:{line}" in str(info.value) and message in str(info.value)


GIBBERISH = "zxqv blorp fnord 7781 kkkk"


@pytest.mark.real
@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_real_backends_with_the_adapter_turn_gibberish_away(tmp_path: Path, backend: str) -> None:
    from modeltriage.loading import encoder_for

    yaml = CALIBRATED.replace("adapter: {enabled: false}", "adapter: {enabled: true}")
    intents_dir = write_intents(
        tmp_path / "intents", TINY_INTENTS, yaml + f"encoder: {{backend: {backend}}}\n"
    )
    intent_set = load_intents(intents_dir)
    encoder = encoder_for(intent_set, export=True)
    build_index(intents_dir, encoder)
    router = Router.load(intents_dir, encoder=encoder, log=False)
    assert router.manifest.oos_floor is not None and router.manifest.adapter != "off"
    away = router.route(GIBBERISH)
    assert away.reason == "no_match", away.explanation
    assert router.route("when do you open on saturday").intent == "hours"


def test_lint_and_diff_build_in_memory_with_the_floor_a_saved_build_has(tmp_path: Path) -> None:
    # `lint` and `diff` build a side without an index in memory: it must turn away what
    # the saved index turns away, or `diff` reports changes no edit caused.
    from modeltriage.learn.lint import index_for_lint

    intents_dir = write_intents(tmp_path / "intents", TINY_INTENTS, CALIBRATED)
    in_memory, note = index_for_lint(load_intents(intents_dir), HashingEncoder())
    assert note is not None and "in memory" in note
    saved = build_index(intents_dir, HashingEncoder())
    assert saved.oos_floor is not None
    assert in_memory.manifest.oos_floor == saved.oos_floor
