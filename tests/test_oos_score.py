"""The combined out-of-scope score (top similarity + relative Mahalanobis distance): its
pure steps on tiny hand-made vectors, the policy's no_match with it, the setting, its
place in the index (file, manifest, staleness), and the real encoder end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from modeltriage import HashingEncoder, Router, SentenceTransformerEncoder, StaleIndexError
from modeltriage.core import oos_score as S
from modeltriage.core.config import OutOfScopeSettings
from modeltriage.core.index import read_manifest
from modeltriage.core.policy import decide
from modeltriage.loading import build_index
from tests.conftest import ROUTER_YAML, TORCH_BACKEND, write_intents

from .test_policy import CONFIG, INTENTS, n

PIN = "out_of_scope: {calibrate: false}"


def _direct(
    x: np.ndarray, means: np.ndarray, p: np.ndarray, g: np.ndarray, p0: np.ndarray
) -> float:
    """min_c (x - m_c)' P (x - m_c) - (x - g)' P0 (x - g), term by term."""
    nearest = min(float((x - m) @ p @ (x - m)) for m in means)
    return nearest - float((x - g) @ p0 @ (x - g))


# Two intents in 3 dimensions: intent 0 around the first axis, intent 1 around the
# second, each varying a little along the third.
TWO = np.array(
    [
        [1.0, 0.0, 0.1],
        [1.0, 0.0, -0.1],
        [1.0, 0.05, 0.0],
        [0.0, 1.0, 0.1],
        [0.0, 1.0, -0.1],
        [0.05, 1.0, 0.0],
    ]
)
TWO_LABELS = np.array([0, 0, 0, 1, 1, 1])


def _shrunk(residuals: np.ndarray, dof: int) -> np.ndarray:
    d = residuals.shape[1]
    sample = residuals.T @ residuals / dof
    lam = S.ledoit_wolf_shrinkage(residuals)
    shrunk: np.ndarray = (1 - lam) * sample + lam * np.trace(sample) / d * np.eye(d)
    return shrunk


@pytest.mark.parametrize(
    "query",
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.6, 0.5], [-1.0, 0.2, 0.0]],
)
def test_distances_are_the_relative_mahalanobis_distance(query: list[float]) -> None:
    g = S.fit_gaussians(TWO, TWO_LABELS)
    assert g is not None
    x = S._unit(TWO)
    means = np.stack([x[c == TWO_LABELS].mean(axis=0) for c in (0, 1)])
    covariance = _shrunk(x - means[TWO_LABELS], 6 - 2)
    between = means[TWO_LABELS] - x.mean(axis=0)
    p = np.linalg.inv(covariance)
    p0 = np.linalg.inv(covariance + between.T @ between / (6 - 1))
    q = np.asarray(query) / np.linalg.norm(query)
    expected = _direct(q, means, p, x.mean(axis=0), p0)
    assert g.distances(np.array([query]))[0] == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_a_vector_off_every_intent_is_further_than_one_on_an_intent() -> None:
    g = S.fit_gaussians(TWO, TWO_LABELS)
    assert g is not None
    on, off = g.distances(np.array([[1.0, 0.02, 0.0], [0.0, 0.0, 1.0]]))
    assert on < off


@pytest.mark.parametrize(("per_intent", "fitted"), [(4, False), (7, True), (20, True)])
def test_a_far_vector_is_far_once_residuals_outnumber_dimensions(
    per_intent: int, fitted: bool
) -> None:
    # 3 intents in 16 dimensions, each near its own axis: 3 x 4 exemplars leave 9
    # residuals for 16 dimensions (no Gaussians); 3 x 7 leave 18. A vector on another
    # axis is then further (relative distance) than any exemplar.
    rng = np.random.default_rng(0)
    x = np.zeros((3 * per_intent, 16))
    for c in range(3):
        x[per_intent * c : per_intent * (c + 1), c] = 1.0
    x += 0.05 * rng.standard_normal(x.shape)
    g = S.fit_gaussians(x, np.repeat(np.arange(3), per_intent))
    assert (g is not None) == fitted
    if g is not None:
        far = np.zeros((1, 16))
        far[0, 10] = 1.0
        assert g.distances(far)[0] > g.distances(x).max()


@pytest.mark.parametrize(
    ("vectors", "labels"),
    [
        ([[1.0, 0.0], [0.9, 0.1]], [0, 0]),  # one intent: nothing to tell apart
        ([[1.0, 0.0], [0.0, 1.0]], [0, 1]),  # one exemplar each: no spread within an intent
    ],
)
def test_gaussians_that_cannot_be_estimated_are_none(
    vectors: list[list[float]], labels: list[int]
) -> None:
    assert S.fit_gaussians(np.array(vectors), np.array(labels)) is None


@pytest.mark.parametrize(
    ("residuals", "low", "high"),
    [
        # Residuals that already are a multiple of the identity: shrink all the way.
        ([[1, 0], [-1, 0], [0, 1], [0, -1]], 1.0, 1.0),
        # Many rows along one axis in 2 dimensions: the sample covariance is trusted.
        ([[t, 0.01 * ((-1) ** i)] for i, t in enumerate(np.linspace(-1, 1, 200))], 0.0, 0.05),
    ],
)
def test_ledoit_wolf_shrinkage(residuals: list[list[float]], low: float, high: float) -> None:
    assert low <= S.ledoit_wolf_shrinkage(np.array(residuals, dtype=float)) <= high


SCALE = S.Scale(similarity_mean=0.5, similarity_std=0.1, distance_mean=10.0, distance_std=2.0)


@pytest.mark.parametrize(
    ("similarity", "distance", "expected"),
    [
        (0.5, 10.0, 0.0),  # both at the held-out mean
        (0.6, 8.0, 2.0),  # a spread closer on each
        (0.4, 14.0, -3.0),  # one spread less similar, two further
        (0.7, 16.0, -1.0),  # very similar, but atypical: the distance wins
    ],
)
def test_combined_adds_the_standardised_parts(
    similarity: float, distance: float, expected: float
) -> None:
    got = S.combined(np.array([similarity]), np.array([distance]), SCALE)[0]
    assert got == pytest.approx(expected)


def test_scale_needs_enough_held_out_rows_that_vary() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.random(S.MIN_HELD_OUT - 1), rng.random(S.MIN_HELD_OUT)
    assert S.scale_of(few, few) is None
    assert S.scale_of(many, np.full(many.size, 3.0)) is None
    scale = S.scale_of(many, 2 * many)
    assert scale is not None and scale.distance_std == pytest.approx(2 * scale.similarity_std)


def test_request_scores_need_a_scale() -> None:
    g = S.fit_gaussians(TWO, TWO_LABELS)
    assert g is not None
    with pytest.raises(ValueError, match="scale"):
        S.request_scores(g, TWO[:1], [0.9])
    (score,) = S.request_scores(g.with_scale(SCALE), TWO[:1], [0.6])
    assert score.similarity == 0.6
    assert score.value == pytest.approx(1.0 + (10.0 - score.distance) / 2.0, abs=1e-5)


@pytest.mark.parametrize(
    ("value", "reason"),
    [(-1.5, "no_match"), (-0.5, "confident")],
)
def test_the_policy_compares_the_score_with_the_floor(value: float, reason: str) -> None:
    config = CONFIG.model_copy(
        update={"thresholds": CONFIG.thresholds.model_copy(update={"min_similarity": None})}
    )
    score = S.OosScore(value=value, similarity=0.9, distance=42.0)
    verdict = decide([n("hours", 0.9)], config, INTENTS, 10, oos_floor=-1.0, oos_score=score)
    assert verdict.reason == reason
    if reason == "no_match":
        assert "out-of-scope score -1.500 < the floor -1.000 by 0.500" in verdict.explanation
        assert "similarity+mahalanobis" in verdict.explanation


def test_files_round_trip_and_refuse_a_wrong_shape(tmp_path: Path) -> None:
    g = S.fit_gaussians(TWO, TWO_LABELS)
    assert g is not None
    g = g.with_scale(SCALE)
    S.write_gaussians(tmp_path / S.FILE_NAME, g)
    back = S.read_gaussians(tmp_path / S.FILE_NAME, 3, 2)
    assert back.digest == g.digest and back.scale == SCALE
    with pytest.raises(ValueError, match="class_linear"):
        S.read_gaussians(tmp_path / S.FILE_NAME, 3, 5)
    with pytest.raises(ValueError, match="unreadable"):
        S.read_gaussians(tmp_path / "missing.npz", 3, 2)


def test_the_setting() -> None:
    assert OutOfScopeSettings().score == "similarity+mahalanobis"
    # The similarity floor keeps its old key: indexes built before the setting stay current.
    assert OutOfScopeSettings(score="similarity").key == "held-out:share=0.03,hold_out=0.1,seed=0"
    assert OutOfScopeSettings().key.endswith(",score=similarity+mahalanobis")
    assert OutOfScopeSettings(calibrate=False).key == "off"
    with pytest.raises(ValueError, match="similarity\\+mahalanobis"):
        OutOfScopeSettings(score="energy")  # type: ignore[arg-type]


# Four intents of 80 exemplars, each from its own words (the hashing encoder sees words
# only): 32 held out, and 284 residuals for the encoder's 256 dimensions.
WORDS = {
    "hours": "open close hours today sunday monday morning evening time shop",
    "refund": "refund money back broken damaged order return purchase item pay",
    "code": "python script error traceback debug function loop variable class bug",
    "travel": "flight hotel booking trip airport luggage train ticket visa passport",
}


def _generated_intents() -> dict[str, str]:
    files = {}
    for name, words in WORDS.items():
        w = words.split()
        triples = [(a, b, c) for a in range(10) for b in range(10) for c in range(10)]
        distinct = [t for t in triples if len(set(t)) == 3][::9][:80]
        lines = [f"  - {w[a]} {w[b]} {w[c]}" for a, b, c in distinct]
        files[f"{name}.yaml"] = f"name: {name}\ndifficulty: easy\nexemplars:\n" + "\n".join(lines)
    return files


def _yaml(score: str) -> str:
    oos = f"out_of_scope: {{calibrate: true, reject_share: 0.1, hold_out: 0.1, score: {score}}}"
    return ROUTER_YAML.replace(PIN, oos).replace("min_similarity: 0.2", "min_similarity: null")


def test_the_index_keeps_the_gaussians_and_routing_applies_them(tmp_path: Path) -> None:
    intents_dir = write_intents(
        tmp_path / "intents", _generated_intents(), _yaml(S.COMBINED) + TORCH_BACKEND
    )
    encoder = HashingEncoder()
    manifest = build_index(intents_dir, encoder)
    assert manifest.oos_score == S.COMBINED and manifest.oos_held_out == 32
    assert manifest.oos_digest is not None and manifest.oos_shrinkage is not None
    build, _ = read_manifest(intents_dir / ".index")
    assert (build / S.FILE_NAME).is_file()
    router = Router.load(intents_dir, encoder=encoder, log=False)
    assert router.route("python debug traceback").intent == "code"
    away = router.route("zebra quantum paperclip")
    assert away.reason == "no_match" and "out-of-scope score" in away.explanation
    # What evaluation's top-1 baseline reuses: the score routing compared with the floor.
    scores = router.out_of_scope_scores(["zebra quantum paperclip", "python debug traceback"])
    assert scores is not None and manifest.oos_floor is not None
    assert scores[0].value < manifest.oos_floor <= scores[1].value
    # Deterministic: the same rows and seed give the same floor and the same file.
    again = build_index(intents_dir, encoder)
    assert (again.oos_floor, again.oos_digest) == (manifest.oos_floor, manifest.oos_digest)


def test_a_tampered_file_or_another_score_is_refused(tmp_path: Path) -> None:
    intents_dir = write_intents(
        tmp_path / "intents", _generated_intents(), _yaml(S.COMBINED) + TORCH_BACKEND
    )
    encoder = HashingEncoder()
    build_index(intents_dir, encoder)
    build, _ = read_manifest(intents_dir / ".index")
    g = S.read_gaussians(build / S.FILE_NAME, encoder.dim, 4)
    S.write_gaussians(build / S.FILE_NAME, g.with_scale(SCALE))
    with pytest.raises(StaleIndexError, match="not the one its manifest records"):
        Router.load(intents_dir, encoder=encoder, log=False)
    (build / S.FILE_NAME).unlink()
    with pytest.raises(StaleIndexError, match="unreadable"):
        Router.load(intents_dir, encoder=encoder, log=False)
    (intents_dir / "router.yaml").write_text(_yaml(S.SIMILARITY) + TORCH_BACKEND, encoding="utf-8")
    with pytest.raises(StaleIndexError, match="out-of-scope floor"):
        Router.load(intents_dir, encoder=encoder, log=False)


def test_too_few_held_out_exemplars_keep_the_floor_on_the_similarity(tmp_path: Path) -> None:
    yaml = _yaml(S.COMBINED).replace("hold_out: 0.1", "hold_out: 0.05")
    intents_dir = write_intents(tmp_path / "intents", _generated_intents(), yaml + TORCH_BACKEND)
    manifest = build_index(intents_dir, HashingEncoder())
    assert manifest.oos_held_out == 16 and manifest.oos_score == S.SIMILARITY
    assert manifest.oos_floor is not None and manifest.oos_digest is None
    router = Router.load(intents_dir, encoder=HashingEncoder(), log=False)  # not stale
    assert router.out_of_scope_scores(["anything"]) is None


@pytest.mark.real
def test_real_encoder_turns_an_unrelated_request_away(
    shipped_copy: Path, real_encoder: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    # The shipped intents (641 exemplars of 24 intents, the adapter on, the shipped
    # router.yaml's score) without min_similarity, so that the calibrated floor decides.
    intents_dir = tmp_path / "intents"
    shutil.copytree(shipped_copy, intents_dir, ignore=shutil.ignore_patterns(".index", ".log*"))
    yaml = (intents_dir / "router.yaml").read_text(encoding="utf-8")
    assert "min_similarity: 0.45" in yaml
    (intents_dir / "router.yaml").write_text(
        yaml.replace("min_similarity: 0.45", "min_similarity: null"), encoding="utf-8"
    )
    manifest = build_index(intents_dir, real_encoder)
    assert manifest.oos_score == S.COMBINED and manifest.adapter != "off"
    assert manifest.oos_floor is not None and manifest.oos_digest is not None
    router = Router.load(intents_dir, encoder=real_encoder, log=False)
    for unrelated in (
        "what is the boiling point of liquid nitrogen",
        "who won the world cup in 1998",
    ):
        away = router.route(unrelated)
        assert away.reason == "no_match", away.explanation
        assert "out-of-scope score" in away.explanation
    assert router.route("what are your opening hours on sunday").reason != "no_match"
