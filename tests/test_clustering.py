"""Clustering prompts without a task into intents for `modeltriage learn`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modeltriage import HashingEncoder, InputError, load_intents
from modeltriage.cli.main import main
from modeltriage.core.config import Scoring
from modeltriage.core.encoders import SentenceTransformerEncoder, normalise
from modeltriage.learn.clustering import cluster_labels, cluster_names, default_cluster_count
from modeltriage.learn.outcome_data import OutcomeRow
from modeltriage.learn.outcome_intents import group_names, learn_intents

from .test_outcomes import TIERS, synthetic, write_rows


@pytest.mark.parametrize(("rows", "expected"), [(1, 2), (8, 2), (50, 5), (2225, 33), (100_000, 50)])
def test_default_cluster_count(rows: int, expected: int) -> None:
    assert default_cluster_count(rows) == expected


def two_blobs(per_blob: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal([5, 0, 0, 0], 0.3, size=(per_blob * 2, 4))  # the larger blob
    b = rng.normal([0, 5, 0, 0], 0.3, size=(per_blob, 4))
    return normalise(np.vstack([a, b]))


def test_cluster_labels_find_the_blobs_largest_first_and_are_seeded() -> None:
    vectors = two_blobs()
    labels = cluster_labels(vectors, 2, seed=0)
    assert labels == [0] * 60 + [1] * 30
    assert cluster_labels(vectors, 2, seed=0) == labels
    assert cluster_labels(vectors, 1) == [0] * 90


@pytest.mark.parametrize(("clusters", "fragment"), [(0, "at least 1"), (91, "cannot make 91")])
def test_cluster_labels_refuse(clusters: int, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        cluster_labels(two_blobs(), clusters)


def test_learn_intents_takes_group_names() -> None:
    rows = synthetic(12)
    groups = ["a" if i < 6 else "b" for i in range(12)]
    intents, skipped = learn_intents(rows, TIERS, groups=groups)
    assert [(i.name, len(i.exemplars)) for i in intents] == [("a", 6), ("b", 6)]
    assert skipped == 0
    with pytest.raises(ValueError, match="one group name per row"):
        learn_intents(rows, TIERS, groups=["a"])


def test_group_names_cluster_only_rows_without_a_task() -> None:
    rows = synthetic(12)
    untasked = [OutcomeRow(r.id, r.text, None, r.outcomes) for r in rows[:6]] + rows[6:]
    scoring = Scoring()
    assert group_names(rows, HashingEncoder(), scoring) is None  # every row has a task
    names = group_names(untasked, HashingEncoder(), scoring, clusters=2)
    assert names is not None
    assert all(n.startswith("cluster_") for n in names[:6])
    assert names[6:] == [r.task for r in rows[6:]]
    everything = group_names(rows, HashingEncoder(), scoring, "cluster", clusters=3)
    assert everything is not None and all(n.startswith("cluster_") for n in everything)


@pytest.mark.real
def test_real_encoder_clusters_prompts_by_topic(real_encoder: SentenceTransformerEncoder) -> None:
    rows = synthetic(30)  # arithmetic, proofs, essay summaries: three topics
    names = cluster_names([r.text for r in rows], real_encoder, 3, seed=0)
    by_kind: dict[int, set[str]] = {}
    for i, name in enumerate(names):
        by_kind.setdefault(i % 3, set()).add(name)
    # each kind of prompt lands in one cluster of its own
    assert all(len(found) == 1 for found in by_kind.values()), by_kind
    assert len(set(names)) == 3


@pytest.mark.real
def test_learn_cli_clusters_with_the_real_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [OutcomeRow(r.id, r.text, None, r.outcomes) for r in synthetic(30)]
    source = write_rows(tmp_path / "untasked.outcomes.jsonl", rows)
    out = tmp_path / "learned"
    tiers = "small=tiny,mid=medium,flagship=huge"
    argv = ["learn", str(source), "--tiers", tiers, "--out", str(out), "--clusters", "3"]
    assert main(argv) == 0
    assert "wrote 3 intents, 30 exemplars" in capsys.readouterr().out
    names = sorted(i.name for i in load_intents(out).intents)
    assert names == ["cluster_00", "cluster_01", "cluster_02"]


def test_learn_cli_refuses_zero_clusters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [OutcomeRow(r.id, r.text, None, r.outcomes) for r in synthetic(30)]
    source = write_rows(tmp_path / "untasked.outcomes.jsonl", rows)
    tiers = "small=tiny,mid=medium,flagship=huge"
    bad = ["learn", str(source), "--tiers", tiers, "--out", str(tmp_path / "x"), "--clusters", "0"]
    assert main(bad, encoder=HashingEncoder()) == 1
    assert "--clusters must be at least 1" in capsys.readouterr().err
