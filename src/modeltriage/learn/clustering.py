"""Group prompts without a task label into intents by clustering their embeddings.

`modeltriage learn` groups exemplars into intents by the outcomes' ``task`` field; real
logs rarely have one. Spherical k-means (FAISS) over the same embeddings the router uses
gives intents whose neighbours share a topic, so the difficulty vote among the winning
intent's neighbours compares like with like.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from modeltriage.core.encoders import Encoder, Vectors
from modeltriage.errors import InputError

MAX_DEFAULT_CLUSTERS = 50


def default_cluster_count(rows: int) -> int:
    """sqrt(rows / 2), from 2 to 50: the usual rule of thumb, bounded so a large log does
    not become hundreds of intents."""
    return max(2, min(MAX_DEFAULT_CLUSTERS, round(math.sqrt(rows / 2))))


def cluster_labels(vectors: Vectors, clusters: int, *, seed: int = 0) -> list[int]:
    """Spherical k-means labels, numbered by cluster size (0 = largest) so names are
    stable across runs with the same seed. Deterministic for a given seed."""
    import faiss

    count = len(vectors)
    if clusters < 1:
        raise InputError(f"--clusters must be at least 1, got {clusters}")
    if count < clusters:
        raise InputError(f"cannot make {clusters} clusters of {count} prompts")
    if clusters == 1:
        return [0] * count
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    kmeans = faiss.Kmeans(
        data.shape[1], clusters, niter=25, seed=seed, spherical=True, verbose=False
    )
    # FAISS samples at most 256 points per centroid unless told otherwise; keep them all
    # so the result does not depend on its sampling.
    kmeans.cp.max_points_per_centroid = max(256, count)
    kmeans.train(data)
    _, assigned = kmeans.index.search(data, 1)
    raw = [int(a) for a in assigned[:, 0]]
    sizes = np.bincount(raw, minlength=clusters)
    order = sorted(range(clusters), key=lambda c: (-sizes[c], c))
    rank = {c: i for i, c in enumerate(order)}
    return [rank[c] for c in raw]


def cluster_names(
    texts: Sequence[str], encoder: Encoder, clusters: int | None = None, *, seed: int = 0
) -> list[str]:
    """One intent name per text, ``cluster_00`` being the largest cluster. ``texts`` are
    embedded as given: pass the scoring view (head or tail) the router will use."""
    if not texts:
        return []
    count = default_cluster_count(len(texts)) if clusters is None else clusters
    labels = cluster_labels(encoder.encode(list(texts)), count, seed=seed)
    width = max(2, len(str(count - 1)))
    return [f"cluster_{label:0{width}d}" for label in labels]
