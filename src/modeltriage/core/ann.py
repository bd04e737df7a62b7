"""Which FAISS index serves an exemplar set of a given size, and how good an approximate one is.

Up to ``flat_max`` vectors an exact ``IndexFlatIP`` costs little, so ``type: auto``
keeps it; above that it switches to IVF, whose cell
count and probe grow with the size. IVF rather than HNSW by default because it builds an
order of magnitude faster on a small machine and its recall is set by one knob
(``nprobe``); HNSW is there for those who want the lowest search time and can afford
its build (docs/benchmarks.md, "Large exemplar sets", has the measurements).

A plan's :attr:`IndexPlan.description` is what the manifest records as ``index_type``:
an index built by another plan (another type, or the same type with other parameters)
is stale. The flat description is the one indexes have always recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from modeltriage.errors import MissingDependencyError

IndexType = Literal["auto", "flat", "hnsw", "ivf"]
FLAT_DESCRIPTION = "faiss.IndexFlatIP"


class IndexSettings(BaseModel):
    """router.yaml ``index:``: the FAISS index type and its parameters (null: from the size)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: IndexType = Field(
        default="auto", description="auto: flat up to flat_max vectors, IVF above"
    )
    # 10,000: a flat search reads every vector, and between two requests the encoder
    # pushes them out of the CPU cache, so on 15,000 CLINC150 exemplars it was 2 ms of a
    # 7 ms route(); IVF made it 4.5 ms with the same decision on every CLINC150 test
    # request. At 5,100 exemplars the two were within noise (docs/benchmarks.md, "IVF
    # above 10,000 exemplars").
    flat_max: int = Field(default=10_000, ge=1, description="largest set auto keeps exact")
    hnsw_m: int | None = Field(default=None, ge=4, le=128, description="HNSW links per node")
    ef_construction: int | None = Field(default=None, ge=8, le=4096)
    ef_search: int | None = Field(default=None, ge=1, le=4096)
    nlist: int | None = Field(default=None, ge=1, le=1 << 20, description="IVF cells")
    nprobe: int | None = Field(default=None, ge=1, le=1 << 20, description="IVF cells searched")
    recall_queries: int = Field(
        default=1000, ge=1, le=100_000, description="exemplars used as queries to measure recall"
    )
    recall_k: int = Field(default=10, ge=1, le=1000, description="k of the recall@k measured")


@dataclass(frozen=True)
class IndexPlan:
    """The index to build: its kind and every parameter it is built or searched with."""

    kind: Literal["flat", "hnsw", "ivf"]
    params: tuple[tuple[str, int], ...] = ()

    @property
    def description(self) -> str:
        if self.kind == "flat":
            return FLAT_DESCRIPTION
        name = {"hnsw": "faiss.IndexHNSWFlat", "ivf": "faiss.IndexIVFFlat"}[self.kind]
        return f"{name}({', '.join(f'{k}={v}' for k, v in self.params)})"

    def param(self, name: str) -> int:
        return dict(self.params)[name]


def _pick(given: int | None, derived: int) -> int:
    return derived if given is None else given


def plan_for(size: int, settings: IndexSettings | None = None) -> IndexPlan:
    """The index for ``size`` vectors under ``settings`` (a pure function of both)."""
    settings = IndexSettings() if settings is None else settings
    kind = settings.type
    if kind == "auto":
        kind = "flat" if size <= settings.flat_max else "ivf"
    if kind == "flat":
        return IndexPlan("flat")
    if kind == "hnsw":
        # Larger sets need more links and a wider search for the same recall.
        m = _pick(settings.hnsw_m, 32 if size <= 1_000_000 else 48)
        ef_search = _pick(settings.ef_search, 64 if size <= 200_000 else 128)
        ef_construction = _pick(settings.ef_construction, 80)
        return IndexPlan(
            "hnsw", (("M", m), ("efConstruction", ef_construction), ("efSearch", ef_search))
        )
    # IVF: about sqrt(n) cells, never more than vectors/39 (k-means wants ~39 training
    # points a cell), and a probe of a tenth of the cells, at least 16.
    nlist = _pick(settings.nlist, max(1, min(int(math.sqrt(size)), size // 39)))
    nprobe = _pick(settings.nprobe, max(16, nlist // 10))
    return IndexPlan("ivf", (("nlist", nlist), ("nprobe", min(nprobe, nlist))))


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss-cpu", None) from None
    return faiss


def build_faiss(plan: IndexPlan, vectors: NDArray[np.float32]) -> Any:
    """A FAISS inner-product index of ``plan`` holding ``vectors`` (unit rows)."""
    faiss = _faiss()
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = data.shape[1]
    if plan.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif plan.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, plan.param("M"), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = plan.param("efConstruction")
        index.hnsw.efSearch = plan.param("efSearch")
    else:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, plan.param("nlist"), faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # the same exemplars give the same cells
        # k-means on at most 64 points a cell: more adds build time, not recall.
        cap = 64 * plan.param("nlist")
        rng = np.random.default_rng(1234)
        train = (
            data
            if data.shape[0] <= cap
            else data[np.sort(rng.choice(data.shape[0], cap, replace=False))]
        )
        index.train(train)
        index.nprobe = plan.param("nprobe")
        # The quantizer belongs to the index from now on (freed with it).
        index.own_fields = True
        quantizer.this.disown()
    index.add(data)
    return index


def recall_at_k(
    index: Any, vectors: NDArray[np.float32], queries: int, k: int, seed: int = 0
) -> float:
    """Mean share of the exact ``k`` nearest neighbours that ``index`` finds, over
    ``queries`` exemplars drawn (seeded) from ``vectors`` and used as queries."""
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    k = min(k, data.shape[0])
    picked = np.random.default_rng(seed).choice(
        data.shape[0], min(queries, data.shape[0]), replace=False
    )
    sample = data[np.sort(picked)]
    faiss = _faiss()
    # faiss.knn searches ``data`` where it is, without copying it into an index.
    _, truth = faiss.knn(sample, data, k, metric=faiss.METRIC_INNER_PRODUCT)
    _, found = index.search(sample, k)
    hits = sum(len(set(t.tolist()) & set(f.tolist())) for t, f in zip(truth, found, strict=True))
    return round(float(hits) / (k * int(sample.shape[0])), 4)
