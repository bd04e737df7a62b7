"""The exemplar index on disk: build, save atomically, load with a manifest check, search.

Layout of an index directory::

    CURRENT                    name of the live build (replaced atomically)
    builds/<build>/index.faiss vectors (FAISS inner-product index over unit vectors)
    builds/<build>/rows.json   intent and text of each vector, in index order
    builds/<build>/adapter.npy the learned map of the embedding space (adapter on)
    builds/<build>/oos_gaussians.npz  the out-of-scope score's Gaussians (score
                               similarity+mahalanobis)
    builds/<build>/manifest.json

A rebuild writes a new build directory and only then swaps ``CURRENT``, so a crash
at any point leaves the previous index loadable; :mod:`.index_builds` owns that directory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from modeltriage.core.adapter import (
    Adapter,
    adapter_manifest_fields,
    normalise_rows,
    train_adapter,
    train_settings,
)
from modeltriage.core.ann import IndexSettings, build_faiss, plan_for, recall_at_k
from modeltriage.core.config import (
    AdapterSettings,
    Difficulty,
    OutOfScopeSettings,
    RouterConfig,
    Scoring,
)
from modeltriage.core.decision import Neighbour
from modeltriage.core.encoders import Encoder, Vectors
from modeltriage.core.index_builds import stamp, write_build, write_json
from modeltriage.core.intents import Intent
from modeltriage.core.oos_score import (
    COMBINED,
    FILE_NAME,
    SIMILARITY,
    Gaussians,
    OosScore,
    read_build_gaussians,
    request_scores,
    write_gaussians,
)
from modeltriage.core.out_of_scope import calibrate_index_floor
from modeltriage.core.vector_index import FaissIndex, NumpyIndex, VectorIndex
from modeltriage.errors import IndexMissingError, StaleIndexError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExemplarRow:
    intent: str
    text: str
    difficulty: Difficulty


def exemplar_rows(intents: Sequence[Intent]) -> list[ExemplarRow]:
    """Index rows in a canonical order: intents by name, exemplars as written."""
    return [
        ExemplarRow(intent.name, exemplar.text, intent.exemplar_difficulty(exemplar))
        for intent in sorted(intents, key=lambda it: it.name)
        for exemplar in intent.exemplars
    ]


def content_hash(rows: Sequence[ExemplarRow]) -> str:
    """Hash of what was embedded. Prices, thresholds and difficulties are not in it:
    changing them needs no re-embedding, so it does not make the index stale."""
    payload = json.dumps([[r.intent, r.text] for r in rows], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int
    encoder: str
    dim: int
    content_hash: str
    exemplars: int
    intents: int
    built_at: str
    index_type: str
    text_view: str = "head"
    # recall@k of an approximate index against exact search, measured at build time.
    recall: float | None = None
    recall_k: int | None = None
    # The adapter's settings key (AdapterSettings.key, "off" without one), the digest of
    # adapter.npy, and what cross-validation chose.
    adapter: str = "off"
    adapter_digest: str | None = None
    adapter_weight_decay: float | None = None
    adapter_cv_accuracy: float | None = None
    adapter_cv_identity_accuracy: float | None = None
    # The out-of-scope floor calibrated on held-out exemplars (OutOfScopeSettings.key,
    # "off" without one), and how many exemplars it was measured on.
    out_of_scope: str = "off"
    oos_floor: float | None = None
    oos_held_out: int | None = None
    oos_median: float | None = None
    # What the floor is on (oos_score.SIMILARITY or COMBINED: the latter when asked for
    # and its Gaussians could be fitted), the digest of oos_gaussians.npz and the
    # shrinkage of their shared covariance.
    oos_score: str = SIMILARITY
    oos_digest: str | None = None
    oos_shrinkage: float | None = None

    @property
    def version(self) -> str:
        """Short id of the indexed content, reported in every decision."""
        return self.content_hash[:12]


@dataclass(frozen=True)
class LoadedIndex:
    index: VectorIndex
    rows: list[ExemplarRow]
    manifest: Manifest
    build: str | None = None
    """The build directory's name under ``builds/``, once saved or when loaded from disk."""
    adapter: Adapter | None = None
    gaussians: Gaussians | None = None  # the combined out-of-scope score's, if on

    def out_of_scope_scores(
        self, queries: Vectors, neighbours: Sequence[Sequence[Neighbour]]
    ) -> list[OosScore] | None:
        """Each request's combined out-of-scope score from its raw vector (before the
        adapter) and its neighbours' top similarity; None when the floor is on the
        similarity alone."""
        if self.gaussians is None:
            return None
        tops = [max((n.similarity for n in row), default=-1.0) for row in neighbours]
        return request_scores(self.gaussians, queries, tops)

    def neighbours(self, queries: Vectors, k: int) -> list[list[Neighbour]]:
        """The ``k`` nearest exemplars of each query (through the adapter, when the
        index has one), nearest first."""
        if self.adapter is not None:
            queries = self.adapter.apply(queries)
        return neighbours_of(self.rows, *self.index.search(queries, k))

    def raw_nearest_intents(self, queries: Vectors) -> list[str] | None:
        """The intent of each query's nearest exemplar by raw encoder cosine, without
        the adapter: what explanations compare with. None without an adapter, or when
        the index cannot give its vectors back. The raw exemplars are the indexed ones
        mapped back through the inverse (the adapter is invertible by construction)."""
        raw = self._raw_exemplars
        if raw is None:
            return None
        best = (np.asarray(queries, dtype=np.float32) @ raw.T).argmax(axis=1)
        return [self.rows[int(i)].intent for i in best]

    @functools.cached_property
    def _raw_exemplars(self) -> Vectors | None:
        stored = getattr(self.index, "vectors", None)
        if self.adapter is None or stored is None:
            return None
        return normalise_rows(stored() @ np.linalg.inv(self.adapter.matrix))


def neighbours_of(
    rows: Sequence[ExemplarRow], sims: NDArray[np.float32], ids: NDArray[np.int64]
) -> list[list[Neighbour]]:
    """Turn a search result into neighbours; FAISS pads missing hits with id -1."""
    return [
        [
            Neighbour(
                intent=rows[i].intent,
                text=rows[i].text,
                difficulty=rows[i].difficulty,
                similarity=round(float(s), 6),
            )
            for s, i in zip(row_sims, row_ids, strict=True)
            if i >= 0
        ]
        for row_sims, row_ids in zip(sims, ids, strict=True)
    ]


def _rebuild_hint(intents_dir: Path | None) -> str:
    where = "" if intents_dir is None else f" --intents {intents_dir}"
    return f"run: modeltriage build{where}  (or python scripts/rebuild_index.py{where})"


def build_in_memory(
    rows: Sequence[ExemplarRow],
    encoder: Encoder,
    index_factory: type[FaissIndex] | type[NumpyIndex],
    scoring: Scoring | None = None,
    index_settings: IndexSettings | None = None,
    adapter_settings: AdapterSettings | None = None,
    oos_settings: OutOfScopeSettings | None = None,
) -> LoadedIndex:
    """Embed ``rows``; with ``adapter_settings`` enabled (off when None), train the
    adapter on the vectors and index them through it; with ``oos_settings`` calibrating
    (off when None), calibrate the out-of-scope floor on held-out exemplars."""
    scoring = Scoring() if scoring is None else scoring
    settings = IndexSettings() if index_settings is None else index_settings
    adapting = AdapterSettings(enabled=False) if adapter_settings is None else adapter_settings
    vectors = encoder.encode([scoring.view(r.text) for r in rows])
    if vectors.shape != (len(rows), encoder.dim):
        raise ValueError(
            f"encoder {encoder.model_id} returned shape {vectors.shape}, "
            f"expected ({len(rows)}, {encoder.dim})"
        )
    adapter = None
    oos = OutOfScopeSettings(calibrate=False) if oos_settings is None else oos_settings
    intents = [r.intent for r in rows]
    if adapting.enabled:
        adapter = train_adapter(vectors, intents, train_settings(adapting))
    # The floor's own adapter reuses the weight decay cross-validation chose.
    refit = None if adapter is None else train_settings(adapting, adapter.weight_decay)
    calibration = calibrate_index_floor(vectors, intents, oos, refit)
    gaussians = None if calibration is None else calibration.gaussians
    if adapter is not None:
        vectors = adapter.apply(vectors)
    plan = plan_for(len(rows), settings)
    recall = None
    if index_factory is FaissIndex and plan.kind != "flat":
        index: VectorIndex = FaissIndex(build_faiss(plan, vectors))
        recall = recall_at_k(index, vectors, settings.recall_queries, settings.recall_k)
    else:
        index = index_factory.from_vectors(vectors)
    manifest = Manifest(
        format=FORMAT_VERSION,
        encoder=encoder.model_id,
        dim=encoder.dim,
        content_hash=content_hash(rows),
        exemplars=len(rows),
        intents=len({r.intent for r in rows}),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        index_type=plan.description if index_factory is FaissIndex else "numpy",
        text_view=scoring.view_key,
        recall=recall,
        recall_k=None if recall is None else min(settings.recall_k, len(rows)),
        **adapter_manifest_fields(adapting.key, adapter),
        # The settings' key even when nothing could be held out (no floor then): the
        # index matches its config, and is not rebuilt on every load.
        out_of_scope=oos.key,
        oos_floor=None if calibration is None else calibration.floor,
        oos_held_out=None if calibration is None else calibration.held_out,
        oos_median=None if calibration is None else calibration.median,
        oos_score=SIMILARITY if gaussians is None else COMBINED,
        oos_digest=None if gaussians is None else gaussians.digest,
        oos_shrinkage=None if gaussians is None else gaussians.shrinkage,
    )
    return LoadedIndex(
        index=index, rows=list(rows), manifest=manifest, adapter=adapter, gaussians=gaussians
    )


def build_from_config(
    rows: Sequence[ExemplarRow],
    encoder: Encoder,
    index_factory: type[FaissIndex] | type[NumpyIndex],
    config: RouterConfig,
) -> LoadedIndex:
    """:func:`build_in_memory` with every setting router.yaml gives it (scoring, index
    type, adapter, out-of-scope floor): the one build `build`, serving, `lint` and `diff`
    share, so none of them can leave a setting out."""
    return build_in_memory(
        rows,
        encoder,
        index_factory,
        config.scoring,
        config.index,
        config.adapter,
        config.out_of_scope,
    )


def save_index(loaded: LoadedIndex, index_dir: Path) -> Path:
    """Write a new build and atomically make it current (see :mod:`.index_builds`: a crash
    at any point leaves the last complete build loadable). Returns the build directory."""
    if not isinstance(loaded.index, FaissIndex):
        raise TypeError("only a FaissIndex can be saved for loading later")
    index = loaded.index
    if loaded.adapter is None and loaded.manifest.adapter != "off":
        raise ValueError("the manifest records an adapter, but the index has none")
    adapter = loaded.adapter
    gaussians = loaded.gaussians
    if (gaussians is None) != (loaded.manifest.oos_score != COMBINED):
        raise ValueError("the manifest's out-of-scope score does not match the index's")

    def write_files(build: Path) -> None:
        index.save(build / "index.faiss")
        with (build / "index.faiss").open("rb") as fh:
            os.fsync(fh.fileno())
        write_json(build / "rows.json", [[r.intent, r.text] for r in loaded.rows])
        if adapter is not None:
            with (build / "adapter.npy").open("wb") as fh:
                np.save(fh, adapter.matrix)
                fh.flush()
                os.fsync(fh.fileno())
        if gaussians is not None:
            write_gaussians(build / FILE_NAME, gaussians)

    name = f"{stamp()}-{loaded.manifest.version}"
    return write_build(index_dir, name, write_files, loaded.manifest.model_dump())


def read_manifest(index_dir: Path) -> tuple[Path, Manifest]:
    pointer = index_dir / "CURRENT"
    try:
        build_name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexMissingError(f"no index in {index_dir}") from None
    return read_build_manifest(index_dir / "builds" / build_name)


def read_build_manifest(build: Path) -> tuple[Path, Manifest]:
    try:
        manifest = Manifest.model_validate_json((build / "manifest.json").read_bytes())
    except FileNotFoundError:
        raise IndexMissingError(f"index build {build} is incomplete (no manifest.json)") from None
    except ValueError as exc:
        raise StaleIndexError(f"unreadable manifest in {build}: {exc}") from None
    return build, manifest


def load_index(
    index_dir: Path,
    rows: Sequence[ExemplarRow],
    encoder: Encoder | None,
    intents_dir: Path | None = None,
    scoring: Scoring | None = None,
    index_settings: IndexSettings | None = None,
    adapter_settings: AdapterSettings | None = None,
    oos_settings: OutOfScopeSettings | None = None,
) -> LoadedIndex:
    """Load the current build, refusing one that does not match ``rows``, ``encoder`` (not
    checked when None: a caller that only reads the stored vectors back), the
    index type ``index_settings`` ask for, the adapter and out-of-scope settings (off when
    None), or whose adapter.npy is not the one recorded."""
    view_key = (Scoring() if scoring is None else scoring).view_key
    oos_key = "off" if oos_settings is None else oos_settings.key
    hint = _rebuild_hint(intents_dir)
    try:
        build, manifest = read_manifest(index_dir)
    except IndexMissingError as exc:
        raise IndexMissingError(f"{exc}; {hint}") from None
    adapter_key = "off" if adapter_settings is None else adapter_settings.key
    problem = manifest_problem(
        manifest, rows, view_key, encoder, index_settings, adapter_key, oos_key
    )
    if problem is not None:
        raise StaleIndexError(f"index in {index_dir} {problem}; {hint}")
    return _read_build(build, manifest, rows, hint)


def load_build(
    build: Path, rows: Sequence[ExemplarRow], encoder: Encoder, scoring: Scoring | None = None
) -> LoadedIndex:
    """Load one given build (``--keep-last-good``), refusing it unless it matches ``rows``;
    its adapter is whatever the build was made with."""
    _, manifest = read_build_manifest(build)
    view_key = (Scoring() if scoring is None else scoring).view_key
    problem = manifest_problem(
        manifest, rows, view_key, encoder, None, manifest.adapter, manifest.out_of_scope
    )
    if problem is not None:
        raise StaleIndexError(f"index build {build} {problem}")
    return _read_build(build, manifest, rows, "rebuild it")


def _read_build(
    build: Path, manifest: Manifest, rows: Sequence[ExemplarRow], hint: str
) -> LoadedIndex:
    adapter = _read_adapter(build, manifest)
    if adapter is not None and manifest.adapter_digest != adapter.digest:
        raise StaleIndexError(
            f"index in {build} has an adapter.npy that is not the one its manifest records; {hint}"
        )
    gaussians = read_build_gaussians(
        build, manifest.oos_score, manifest.oos_digest, manifest.dim, manifest.intents, hint
    )
    index = FaissIndex.read(build / "index.faiss")
    if index.size != len(rows):
        raise StaleIndexError(f"index in {build} holds {index.size} vectors, expected {len(rows)}")
    return LoadedIndex(
        index=index,
        rows=list(rows),
        manifest=manifest,
        build=build.name,
        adapter=adapter,
        gaussians=gaussians,
    )


def _read_adapter(build: Path, manifest: Manifest) -> Adapter | None:
    if manifest.adapter == "off":
        return None
    try:
        matrix = np.load(build / "adapter.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StaleIndexError(f"index in {build} lacks a readable adapter.npy: {exc}") from None
    if matrix.shape != (manifest.dim, manifest.dim):
        raise StaleIndexError(
            f"index in {build} has an adapter of shape {matrix.shape}, expected "
            f"({manifest.dim}, {manifest.dim})"
        )
    return Adapter(
        matrix=np.ascontiguousarray(matrix, dtype=np.float32),
        weight_decay=manifest.adapter_weight_decay or 0.0,
        cv_accuracy=manifest.adapter_cv_accuracy,
        cv_identity_accuracy=manifest.adapter_cv_identity_accuracy,
        final_loss=float("nan"),
    )


def manifest_problem(
    manifest: Manifest,
    rows: Sequence[ExemplarRow],
    view_key: str,
    encoder: Encoder | None = None,
    index_settings: IndexSettings | None = None,
    adapter_key: str = "off",
    oos_key: str = "off",
) -> str | None:
    """Why an index with ``manifest`` cannot serve ``rows`` (embedded with ``encoder``, when
    given, through the ``view_key`` view of long texts, as the index type ``index_settings``
    choose, and mapped by an adapter trained with the settings ``adapter_key``), or None
    when it can. The one staleness rule: loading, ``check`` and :func:`index_is_current`
    all ask it."""
    if manifest.format != FORMAT_VERSION:
        return f"has format {manifest.format}, expected {FORMAT_VERSION}"
    if encoder is not None and (
        manifest.encoder != encoder.model_id or manifest.dim != encoder.dim
    ):
        return (
            f"was built with encoder {manifest.encoder!r} (dim {manifest.dim}), but the router "
            f"uses {encoder.model_id!r} (dim {encoder.dim})"
        )
    if manifest.text_view != view_key:
        return (
            f"embeds the {manifest.text_view!r} part of long texts, but scoring.long_text "
            f"asks for {view_key!r}"
        )
    if manifest.adapter != adapter_key:
        return (
            f"was built with adapter {manifest.adapter!r}, but router.yaml's adapter "
            f"settings ask for {adapter_key!r}"
        )
    if manifest.out_of_scope != oos_key:
        return (
            f"was built with out-of-scope floor {manifest.out_of_scope!r}, but router.yaml's "
            f"out_of_scope settings ask for {oos_key!r}"
        )
    if manifest.content_hash != content_hash(rows):
        return (
            f"is stale: built from {manifest.exemplars} exemplars of {manifest.intents} "
            f"intents, the intent files now have {len(rows)} exemplars of "
            f"{len({r.intent for r in rows})} intents or different texts"
        )
    wanted = plan_for(len(rows), index_settings).description
    if manifest.index_type != wanted:
        return (
            f"is a {manifest.index_type} index, but router.yaml's index settings ask for {wanted}"
        )
    return None


def index_is_current(
    index_dir: Path,
    rows: Sequence[ExemplarRow],
    encoder_id: str,
    view_key: str = "head",
    index_settings: IndexSettings | None = None,
    adapter_key: str = "off",
    oos_key: str = "off",
) -> bool:
    with contextlib.suppress(IndexMissingError, StaleIndexError):
        _, manifest = read_manifest(index_dir)
        problem = manifest_problem(
            manifest, rows, view_key, None, index_settings, adapter_key, oos_key
        )
        return manifest.encoder == encoder_id and problem is None
    return False
