"""The adapter: a linear map of the embedding space, learned from the exemplars at build time.

Raw cosine geometry of a general-purpose encoder mixes intents that a classifier trained on
the same vectors separates (issue 11: 88% top-1 against 95% for logistic regression on
CLINC150). The adapter keeps the nearest-neighbour shape of routing and fixes the geometry:
a matrix ``W`` (d x d, initialised at the identity) and one proxy per intent are trained
with Adam over mini-batches to classify each normalised exemplar ``x`` by the cosine of
``norm(x W)`` to the proxies (softmax at temperature 0.05, the vote's), with weight decay
pulling ``W`` back to the identity so that 10 exemplars an intent, or 2 intents, cannot
run away with it; the decay is chosen by k-fold cross-validation over the exemplars.
Only ``W`` is kept: exemplars and queries both go through ``norm(x W)`` before the
index, and everything downstream (neighbours, vote, difficulty, explanations) is
unchanged.

Pure numpy, deterministic in its inputs and the seed (which picks the folds and the
mini-batches): a torch-free build (the ONNX backends) trains it too, and serving is one
matrix multiply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modeltriage.core.config import AdapterSettings
from modeltriage.core.cpu import available_cores
from modeltriage.core.decision import Neighbour
from modeltriage.errors import AdapterError

Matrix = NDArray[np.float32]

# The vote's temperature (core.scoring.VOTE_TEMPERATURE): the loss sharpens cosines on
# the scale the router reads them on.
SCALE = 20.0
_ADAM = (0.9, 0.999, 1e-8)
_CONVERGED = 1e-2  # a mini-batch loss this small (~99% on the right intent): stop


def normalise_rows(vectors: NDArray[np.floating]) -> Matrix:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: Matrix = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


@dataclass(frozen=True)
class Adapter:
    """A trained map and how it was chosen; ``apply`` is all serving needs."""

    matrix: Matrix
    weight_decay: float
    cv_accuracy: float | None  # held-out top-1 accuracy of the exemplars with the adapter
    cv_identity_accuracy: float | None  # the same without it
    final_loss: float

    def apply(self, vectors: NDArray[np.floating]) -> Matrix:
        """``norm(x W)`` per row: exemplars and queries alike."""
        return normalise_rows(np.asarray(vectors, dtype=np.float32) @ self.matrix)

    @property
    def digest(self) -> str:
        return matrix_digest(self.matrix)


def explain_adapter(
    explanation: str, neighbours: Sequence[Neighbour], raw_nearest: str | None
) -> str:
    """An explanation saying the adapter is on, and whether it changed the nearest
    exemplar's intent from the one raw encoder cosine finds (``raw_nearest``; None
    when that is unknown)."""
    if raw_nearest is None or not neighbours:
        return f"{explanation}; adapter on (similarities are cosines after the learned map)"
    nearest = neighbours[0].intent
    if raw_nearest == nearest:
        return f"{explanation}; adapter on, nearest exemplar's intent unchanged ({nearest})"
    return (
        f"{explanation}; adapter on: it changed the nearest exemplar's intent from "
        f"{raw_nearest!r} (raw cosine) to {nearest!r}"
    )


def matrix_digest(matrix: NDArray[np.floating]) -> str:
    data = np.ascontiguousarray(matrix, dtype=np.float32)
    return hashlib.sha256(data.tobytes() + str(data.shape).encode()).hexdigest()


@dataclass(frozen=True)
class _Fit:
    matrix: Matrix
    initial_loss: float
    final_loss: float


def _loss_and_grads(
    x: Matrix, onehot: Matrix, w: Matrix, proxies: Matrix, weight_decay: float, anchor: Matrix
) -> tuple[float, Matrix, Matrix]:
    """Softmax loss of normalised ``x W`` against normalised proxies, plus the decay of
    ``W`` toward ``anchor`` (where training started)."""
    z = x @ w
    z_norm = np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    u = z / z_norm
    p_norm = np.maximum(np.linalg.norm(proxies, axis=1, keepdims=True), 1e-12)
    q = proxies / p_norm
    logits = SCALE * (u @ q.T)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probs = exp / exp.sum(axis=1, keepdims=True)
    n = x.shape[0]
    picked = np.maximum((probs * onehot).sum(axis=1), 1e-30)
    decay = w - anchor
    loss = float(-np.log(picked).mean()) + 0.5 * weight_decay * float((decay * decay).sum())
    g = (probs - onehot) / n
    du = SCALE * (g @ q)
    dq = SCALE * (g.T @ u)
    # Through the normalisations: d(z/|z|) = (dz - u (u . dz)) / |z|.
    dz = (du - u * (u * du).sum(axis=1, keepdims=True)) / z_norm
    dp = (dq - q * (q * dq).sum(axis=1, keepdims=True)) / p_norm
    dw = x.T @ dz + weight_decay * decay
    return loss, dw.astype(np.float32), dp.astype(np.float32)


def _onehot(labels: NDArray[np.int64]) -> Matrix:
    onehot = np.zeros((labels.shape[0], int(labels.max()) + 1), dtype=np.float32)
    onehot[np.arange(labels.shape[0]), labels] = 1.0
    return onehot


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """OpenBLAS with one thread while the adapter trains. Its matrices (a batch of 1,024
    by 384, times 384 by 384) are too small for two threads to pay, and when the other
    core is busy, two threads spin-wait on each other: 15,000 exemplars took 89 s with
    two threads and 23 s with one on the same loaded 2-core machine
    (docs/benchmarks.md, "The adapter on by default")."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def fit_matrix(x: Matrix, labels: NDArray[np.int64], settings: TrainSettings) -> _Fit:
    """Adam over shuffled mini-batches (``settings.seed`` shuffles) from ``W = I`` and
    proxies at the intent means. A mini-batch epoch costs what one full-batch step does,
    and a few epochs are enough, which keeps 15,000 exemplars within seconds; a small
    set, a batch or two an epoch, still gets ``settings.min_steps`` steps."""
    with one_blas_thread():
        return _fit_matrix(x, labels, settings)


def _fit_matrix(x: Matrix, labels: NDArray[np.int64], settings: TrainSettings) -> _Fit:
    onehot = _onehot(labels)
    identity = np.eye(x.shape[1], dtype=np.float32)
    params = [identity.copy(), normalise_rows(onehot.T @ x)]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    beta1, beta2, eps = _ADAM
    rng = np.random.default_rng(settings.seed)
    decay, lr = settings.weight_decay, settings.learning_rate
    initial, *_ = _loss_and_grads(x, onehot, identity, params[1], decay, identity)
    per_epoch = -(-x.shape[0] // settings.batch_size)
    total = max(settings.epochs * per_epoch, settings.min_steps)
    step = 0
    while step < total:
        order = rng.permutation(x.shape[0])
        for start in range(0, x.shape[0], settings.batch_size):
            if step == total:
                break
            batch = order[start : start + settings.batch_size]
            step += 1
            loss, *grads = _loss_and_grads(
                x[batch], onehot[batch], params[0], params[1], decay, identity
            )
            if not np.isfinite(loss):
                return _Fit(params[0], initial, loss)
            if loss < _CONVERGED:
                # Nothing left to learn: Adam's normalised steps on vanishing gradients
                # would only make the map drift (a handful of exemplars gets here, and
                # intents as far apart as RouterBench's tasks: stopping at 1e-3 instead,
                # their loss drifted up from 0.0018 to 0.099).
                step = total
                break
            for param, grad, (m, v) in zip(params, grads, moments, strict=True):
                m *= beta1
                m += (1 - beta1) * grad
                v *= beta2
                v += (1 - beta2) * grad * grad
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                param -= (lr * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
    final, *_ = _loss_and_grads(x, onehot, params[0], params[1], decay, identity)
    return _Fit(params[0], initial, final)


@dataclass(frozen=True)
class TrainSettings:
    weight_decays: Sequence[float]
    weight_decay: float  # the one a fit uses (one of weight_decays once chosen)
    epochs: int
    min_steps: int  # a few exemplars make few batches: still this many Adam steps
    batch_size: int
    learning_rate: float
    folds: int
    seed: int
    cv_max_exemplars: int


def checked_fit(x: Matrix, labels: NDArray[np.int64], settings: TrainSettings) -> _Fit:
    """:func:`fit_matrix`, refusing a result that is not finite or whose loss rose."""
    fit = fit_matrix(x, labels, settings)
    if not (np.isfinite(fit.final_loss) and np.all(np.isfinite(fit.matrix))):
        raise AdapterError(
            f"adapter training diverged (loss {fit.final_loss}); lower adapter.learning_rate"
        )
    # Some slack: intents sharing exemplars hold the loss at a floor it can wobble on.
    if fit.final_loss > fit.initial_loss * 1.05 + 0.01:
        raise AdapterError(
            f"adapter training did not converge: loss rose from {fit.initial_loss:.4f} to "
            f"{fit.final_loss:.4f}; lower adapter.learning_rate or adapter.epochs"
        )
    return fit


def folds_of(labels: NDArray[np.int64], folds: int, seed: int) -> NDArray[np.int64]:
    """A fold number per row, stratified: each intent's rows are dealt round the folds
    in a seeded order, so a fold holds out a share of every intent with enough rows."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(labels.shape[0], dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        fold[rows] = (np.arange(rows.size) + offset) % folds
        offset += rows.size
    return fold


def held_out_top1(
    x: Matrix, labels: NDArray[np.int64], fold: NDArray[np.int64], matrix: Matrix | None, f: int
) -> tuple[NDArray[np.bool_], NDArray[np.float32], NDArray[np.bool_]]:
    """Route fold ``f``'s rows against the other folds' by top-1 cosine (after ``matrix``,
    when given): (correct, top similarity, counted). A row whose intent has no other
    fold's row cannot be right, so it is not counted."""
    train, test = fold != f, fold == f
    keys, queries = x[train], x[test]
    if matrix is not None:
        keys, queries = normalise_rows(keys @ matrix), normalise_rows(queries @ matrix)
    sims = queries @ keys.T
    best = sims.argmax(axis=1)
    counted = np.isin(labels[test], labels[train])
    correct = labels[train][best] == labels[test]
    return correct, sims.max(axis=1).astype(np.float32), counted


def _cv_subset(labels: NDArray[np.int64], limit: int, seed: int) -> NDArray[np.int64]:
    """At most ``limit`` rows, the same share of every intent: cross-validation chooses a
    weight decay, and a stratified sample answers that as well as all of 15,000 rows."""
    if labels.shape[0] <= limit:
        return np.arange(labels.shape[0])
    rng = np.random.default_rng(seed)
    share = limit / labels.shape[0]
    keep: list[NDArray[np.int64]] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        keep.append(rows[: max(2, round(rows.size * share))])
    return np.sort(np.concatenate(keep))


def cross_validate(
    x: Matrix, labels: NDArray[np.int64], settings: TrainSettings
) -> tuple[float, dict[float, float], float]:
    """(the chosen weight decay, held-out top-1 accuracy per weight decay, the
    identity's)."""
    subset = _cv_subset(labels, settings.cv_max_exemplars, settings.seed)
    xs, ys = x[subset], labels[subset]
    fold = folds_of(ys, settings.folds, settings.seed)
    scores: dict[float, list[NDArray[np.bool_]]] = {wd: [] for wd in settings.weight_decays}
    identity: list[NDArray[np.bool_]] = []
    jobs: list[tuple[int, float]] = []
    for f in range(settings.folds):
        train = fold != f
        if not train.any() or train.all():
            continue
        correct, _, counted = held_out_top1(xs, ys, fold, None, f)
        identity.append(correct[counted])
        jobs += [(f, wd) for wd in settings.weight_decays]

    def held_out(job: tuple[int, float]) -> NDArray[np.bool_]:
        f, wd = job
        train = fold != f
        _, remapped = np.unique(ys[train], return_inverse=True)
        fit = checked_fit(xs[train], remapped, replace(settings, weight_decay=wd))
        correct, _, counted = held_out_top1(xs, ys, fold, fit.matrix, f)
        return correct[counted]

    # The fits are independent and each runs BLAS on one thread (numpy lets go of the
    # GIL there), so they share the cores: 4.0 -> 2.1 s on 15,000 exemplars and 2 cores
    # (docs/benchmarks.md, "The adapter's cross-validation on every core"). Results are
    # gathered in job order, so the choice is the same as one after another.
    workers = min(available_cores(), len(jobs))
    # The limit is held here for the whole pool: each fit sets and restores it too, and
    # with this one outside, what they restore is always one thread.
    with one_blas_thread():
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(held_out, jobs))
        else:
            results = [held_out(job) for job in jobs]
    for (_, wd), correct in zip(jobs, results, strict=True):
        scores[wd].append(correct)
    accuracy = {
        wd: float(np.concatenate(v).mean()) if v and np.concatenate(v).size else 0.0
        for wd, v in scores.items()
    }
    base = float(np.concatenate(identity).mean()) if identity else 0.0
    # Ties go to the strongest decay: the map closest to the identity.
    chosen = max(settings.weight_decays, key=lambda wd: (accuracy[wd], wd))
    return chosen, accuracy, base


def train_adapter(x: Matrix, intents: Sequence[str], settings: TrainSettings) -> Adapter:
    """Choose the weight decay by k-fold cross-validation over the exemplars (when there
    is more than one to choose from and enough rows to fold), then fit on all of them."""
    names, labels = np.unique(np.asarray(intents), return_inverse=True)
    labels = labels.astype(np.int64)
    if not np.all(np.isfinite(x)):
        raise AdapterError("the encoder returned vectors that are not finite: no adapter")
    x = normalise_rows(x)
    if names.size < 2:
        # One intent: every exemplar is already classified right, the loss is 0 and
        # training would return W = I. Say so rather than fail the default build.
        unchanged = np.eye(x.shape[1], dtype=np.float32)
        return Adapter(unchanged, settings.weight_decays[0], None, None, 0.0)
    cv_accuracy = identity = None
    decay = settings.weight_decays[0]
    if len(settings.weight_decays) > 1 and x.shape[0] >= 2 * settings.folds:
        with one_blas_thread():  # the folds' held-out searches too
            decay, by_decay, identity = cross_validate(x, labels, settings)
        cv_accuracy = by_decay[decay]
    fit = checked_fit(x, labels, replace(settings, weight_decay=decay))
    return Adapter(fit.matrix, decay, cv_accuracy, identity, fit.final_loss)


def train_settings(settings: AdapterSettings, decay: float | None = None) -> TrainSettings:
    """The adapter's training settings; ``decay``: that weight decay only, no
    cross-validation."""
    decays = settings.weight_decays if decay is None else (decay,)
    return TrainSettings(
        weight_decays=decays,
        weight_decay=decays[0],
        epochs=settings.epochs,
        min_steps=settings.min_steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        folds=settings.folds,
        seed=settings.seed,
        cv_max_exemplars=settings.cv_max_exemplars,
    )


def adapter_manifest_fields(key: str, adapter: Adapter | None) -> dict[str, Any]:
    """The manifest's adapter fields: the settings ``key`` and what training chose."""
    if adapter is None:
        return {"adapter": "off"}
    return {
        "adapter": key,
        "adapter_digest": adapter.digest,
        "adapter_weight_decay": adapter.weight_decay,
        "adapter_cv_accuracy": adapter.cv_accuracy,
        "adapter_cv_identity_accuracy": adapter.cv_identity_accuracy,
    }
