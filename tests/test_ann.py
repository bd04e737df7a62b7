"""The index chosen by size (core/ann.py): plans, recall in the manifest, `check`, and an
index built as another type refused as stale with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modeltriage import HashingEncoder, Router, SentenceTransformerEncoder, build_index
from modeltriage.cli.main import main
from modeltriage.core.ann import IndexSettings, build_faiss, plan_for, recall_at_k
from modeltriage.core.index import read_manifest
from modeltriage.core.vector_index import FaissIndex
from modeltriage.errors import ConfigError, StaleIndexError
from modeltriage.learn.checks import check_index

from .conftest import ROUTER_YAML, TINY_INTENTS, write_intents


@pytest.mark.parametrize(
    ("size", "settings", "description"),
    [
        (1, {}, "faiss.IndexFlatIP"),
        (10_000, {}, "faiss.IndexFlatIP"),
        (15_000, {}, "faiss.IndexIVFFlat(nlist=122, nprobe=16)"),
        (50_001, {}, "faiss.IndexIVFFlat(nlist=223, nprobe=22)"),
        (100_000, {}, "faiss.IndexIVFFlat(nlist=316, nprobe=31)"),
        (1_000_000, {}, "faiss.IndexIVFFlat(nlist=1000, nprobe=100)"),
        (200, {"type": "ivf"}, "faiss.IndexIVFFlat(nlist=5, nprobe=5)"),
        (9, {"type": "ivf"}, "faiss.IndexIVFFlat(nlist=1, nprobe=1)"),
        (200, {"type": "ivf", "nlist": 4, "nprobe": 2}, "faiss.IndexIVFFlat(nlist=4, nprobe=2)"),
        (100_000, {"type": "hnsw"}, "faiss.IndexHNSWFlat(M=32, efConstruction=80, efSearch=64)"),
        (300_000, {"type": "hnsw"}, "faiss.IndexHNSWFlat(M=32, efConstruction=80, efSearch=128)"),
        (
            10,
            {"type": "hnsw", "hnsw_m": 8},
            "faiss.IndexHNSWFlat(M=8, efConstruction=80, efSearch=64)",
        ),
        (10**6, {"type": "flat"}, "faiss.IndexFlatIP"),
        (10, {"flat_max": 5}, "faiss.IndexIVFFlat(nlist=1, nprobe=1)"),
    ],
)
def test_plan_for_size(size: int, settings: dict[str, object], description: str) -> None:
    assert plan_for(size, IndexSettings.model_validate(settings)).description == description


def _unit(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_recall_of_each_kind(kind: str) -> None:
    vectors = _unit(2000)
    plan = plan_for(len(vectors), IndexSettings.model_validate({"type": kind}))
    index = FaissIndex(build_faiss(plan, vectors))
    recall = recall_at_k(index, vectors, 200, 10)
    assert (recall == 1.0) if kind == "flat" else (0.3 < recall <= 1.0)
    # Exhaustive probing makes IVF exact.
    if kind == "ivf":
        exact = plan_for(len(vectors), IndexSettings(type="ivf", nlist=8, nprobe=8))
        assert recall_at_k(FaissIndex(build_faiss(exact, vectors)), vectors, 200, 10) == 1.0


def _with_index(settings: str) -> str:
    return ROUTER_YAML + f"index: {settings}\n"


def test_ivf_index_saved_loaded_and_checked(tmp_path: Path, fake_encoder: HashingEncoder) -> None:
    intents = write_intents(tmp_path / "i", TINY_INTENTS, _with_index("{type: ivf, nlist: 2}"))
    manifest = build_index(intents, encoder=fake_encoder)
    assert manifest.index_type == "faiss.IndexIVFFlat(nlist=2, nprobe=2)"
    assert manifest.recall == 1.0 and manifest.recall_k == 9  # 9 exemplars, all probed
    router = Router.load(intents, encoder=fake_encoder, log=False)
    assert router.route("refund my broken order").intent == "refund"
    found = check_index(intents, fake_encoder.model_id)
    assert found.current and found.manifest is not None and found.manifest.recall == 1.0


def test_another_index_type_is_refused_with_the_reason(
    tmp_path: Path, fake_encoder: HashingEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    intents = write_intents(tmp_path / "i", TINY_INTENTS)
    build_index(intents, encoder=fake_encoder)
    (intents / "router.yaml").write_text(_with_index("{type: hnsw}"))
    with pytest.raises(StaleIndexError) as caught:
        Router.load(intents, encoder=fake_encoder, log=False)
    assert "is a faiss.IndexFlatIP index, but router.yaml's index settings ask for " in str(
        caught.value
    )
    assert "faiss.IndexHNSWFlat(M=32, efConstruction=80, efSearch=64)" in str(caught.value)
    assert main(["check", "--intents", str(intents)], encoder=fake_encoder) == 1
    out = capsys.readouterr().out
    assert "index: stale" in out and "ask for faiss.IndexHNSWFlat" in out
    # Other parameters of the same type are stale too.
    (intents / "router.yaml").write_text(_with_index("{type: hnsw, ef_search: 16}"))
    build_index(intents, encoder=fake_encoder)
    (intents / "router.yaml").write_text(_with_index("{type: hnsw, ef_search: 32}"))
    with pytest.raises(StaleIndexError, match=r"efSearch=16.*efSearch=32"):
        Router.load(intents, encoder=fake_encoder, log=False)
    # build_if_needed rebuilds it as asked.
    Router.load(intents, encoder=fake_encoder, log=False, build_if_needed=True).close()
    assert "efSearch=32" in read_manifest(intents / ".index")[1].index_type


def test_check_prints_the_index_type_and_recall(
    tmp_path: Path, fake_encoder: HashingEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    intents = write_intents(
        tmp_path / "i", TINY_INTENTS, _with_index("{type: ivf, nlist: 3, nprobe: 1}")
    )
    build_index(intents, encoder=fake_encoder)
    assert main(["check", "--intents", str(intents)], encoder=fake_encoder) == 0
    out = capsys.readouterr().out
    assert "index type: faiss.IndexIVFFlat(nlist=3, nprobe=1), recall@9 against exact search" in out
    intents2 = write_intents(tmp_path / "j", TINY_INTENTS)
    build_index(intents2, encoder=fake_encoder)
    assert main(["check", "--intents", str(intents2)], encoder=fake_encoder) == 0
    assert "index type: faiss.IndexFlatIP (exact search)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ("{type: annoy}", "index.type"),
        ("{kind: ivf}", "index.kind"),
        ("{type: ivf, nlist: 0}", "index.nlist"),
        ("{type: hnsw, hnsw_m: .nan}", "index.hnsw_m"),
        ("{recall_queries: 1e300}", "index.recall_queries"),
        ("{flat_max: -1}", "index.flat_max"),
    ],
)
def test_bad_index_settings_name_the_line(tmp_path: Path, settings: str, fragment: str) -> None:
    intents = write_intents(tmp_path / "i", TINY_INTENTS, _with_index(settings))
    with pytest.raises(ConfigError) as caught:
        Router.load(intents, encoder=HashingEncoder(), log=False)
    message = str(caught.value)
    assert "router.yaml" in message and fragment in message


@pytest.mark.real
def test_real_encoder_ivf_routes_like_flat(
    shipped_copy: Path, real_encoder: SentenceTransformerEncoder, tmp_path: Path
) -> None:
    import shutil

    flat = Router.load(shipped_copy, encoder=real_encoder, build_if_needed=True, log=False)
    approx_dir = tmp_path / "approx"
    shutil.copytree(shipped_copy, approx_dir, ignore=shutil.ignore_patterns(".index"))
    yaml = (approx_dir / "router.yaml").read_text()
    (approx_dir / "router.yaml").write_text(yaml + "\nindex: {type: ivf}\n")
    approx = Router.load(approx_dir, encoder=real_encoder, build_if_needed=True, log=False)
    assert approx.manifest.index_type.startswith("faiss.IndexIVFFlat")
    assert approx.manifest.recall is not None and approx.manifest.recall >= 0.9
    texts = ["refund my order", "write a python function to sort a list", "hello there"]
    assert [d.intent for d in approx.route_batch(texts)] == [
        d.intent for d in flat.route_batch(texts)
    ]
