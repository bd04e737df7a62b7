"""Contrastive fine-tuning of the encoder on the intents' own exemplars.

Exemplars of one intent are pulled together and those of other intents pushed apart with
sentence-transformers' ``MultipleNegativesRankingLoss``: each exemplar is an anchor once
per epoch, with a random other exemplar of its intent as the positive, and the other
pairs of its batch (all of other intents) as negatives. The router keeps its shape: the
fine-tuned model only replaces the encoder (``encoder.path`` in router.yaml), so the index
must be rebuilt and ``min_similarity`` re-tuned. Measured on CLINC150 in
docs/finetuning.md.

A plain training loop around the library's own loss and tokenisation: the
sentence-transformers trainer needs the ``datasets`` and ``accelerate`` packages, which the
project does not install.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modeltriage.core.encoders import SentenceTransformerEncoder
from modeltriage.core.index import ExemplarRow, content_hash
from modeltriage.core.intents import load_intents
from modeltriage.errors import ConfigError, InputError
from modeltriage.learn.datasets import LabelledText, read_intents_jsonl
from modeltriage.learn.splits import split_by_intent

FINETUNE_FILE = "finetune.json"
Pair = tuple[str, str]
Progress = Callable[[int, int, float], None]  # step, steps, recent loss
Announce = Callable[[int, int], None]  # exemplars, intents: before training starts


def training_batches(
    rows: Sequence[tuple[str, str]], epochs: int, batch_size: int, seed: int
) -> list[list[Pair]]:
    """(anchor, positive) batches from (intent, text) rows. Per epoch every exemplar of an
    intent with at least two is an anchor once, with a random other exemplar of its intent
    as positive; a batch never holds two pairs of one intent (so no in-batch negative is
    a positive in disguise). Deterministic for a seed."""
    if batch_size < 2:
        raise InputError(f"batch size must be at least 2, got {batch_size}")
    rng = random.Random(seed)
    by_intent: dict[str, list[str]] = {}
    for intent, text in rows:
        by_intent.setdefault(intent, []).append(text)
    batches: list[list[Pair]] = []
    for _ in range(epochs):
        pending: list[tuple[str, str, str]] = []
        for intent in sorted(by_intent):
            texts = by_intent[intent]
            if len(texts) < 2:
                continue
            for j, anchor in enumerate(texts):
                k = rng.randrange(len(texts) - 1)
                pending.append((intent, anchor, texts[k + (k >= j)]))
        rng.shuffle(pending)
        while pending:
            batch: list[Pair] = []
            seen: set[str] = set()
            rest = []
            for item in pending:
                if len(batch) < batch_size and item[0] not in seen:
                    seen.add(item[0])
                    batch.append((item[1], item[2]))
                else:
                    rest.append(item)
            pending = rest
            # A lone pair has no negative to learn from.
            if len(batch) >= 2:
                batches.append(batch)
    return batches


def check_rows(rows: Sequence[tuple[str, str]]) -> None:
    counts: dict[str, int] = {}
    for intent, _ in rows:
        counts[intent] = counts.get(intent, 0) + 1
    trainable = [name for name, n in counts.items() if n >= 2]
    if len(trainable) < 2:
        raise InputError(
            "fine-tuning needs at least two intents with two exemplars or more each "
            f"(found {len(trainable)}): it learns to tell intents apart"
        )


@dataclass(frozen=True)
class FinetuneInfo:
    """What ``finetune.json`` records beside the weights."""

    base_model: str
    exemplars: int
    intents: int
    # Of every (intent, text) row of the source, held-out ones included: when the
    # exemplars change, `modeltriage check` says the fine-tune is stale.
    content_hash: str
    epochs: int
    batch_size: int
    lr: float
    seed: int
    steps: int
    train_s: float
    loss_first: float
    loss_last: float
    created_at: str
    hold_out: float = 0.0  # share of each intent's exemplars left out of training
    loss: str = "MultipleNegativesRankingLoss (scale 20, cosine)"

    def write(self, model_dir: Path) -> None:
        (model_dir / FINETUNE_FILE).write_text(
            json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8"
        )


def read_info(model_dir: Path) -> FinetuneInfo | None:
    """The ``finetune.json`` of a model directory; None when there is none."""
    path = model_dir / FINETUNE_FILE
    if not path.exists():
        return None
    try:
        return FinetuneInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"unreadable fine-tuning record: {exc}", path) from None


def rows_hash(rows: Sequence[tuple[str, str]]) -> str:
    """The index's content hash of these rows, so a fine-tune and an index compare."""
    return content_hash([ExemplarRow(intent, text, "easy") for intent, text in rows])


def prepare_output(out: Path, force: bool) -> None:
    """Refuse to write over anything but an earlier fine-tune (and that only with force)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / FINETUNE_FILE).exists():
            raise InputError(
                f"{out} is not empty and holds no earlier fine-tune: choose another --out"
            )
        if not force:
            raise InputError(f"{out} holds an earlier fine-tune: pass --force to replace it")


def _train(
    model: Any, batches: Sequence[Sequence[Pair]], lr: float, progress: Progress | None
) -> list[float]:
    """Train ``model`` in place on ``batches``; the loss of each step. Left in eval mode."""
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    model.train()
    loss_fn = MultipleNegativesRankingLoss(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, len(batches) // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (len(batches) - step) / max(1, len(batches) - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    losses: list[float] = []
    for step, batch in enumerate(batches):
        anchors = model.preprocess([a for a, _ in batch])
        positives = model.preprocess([p for _, p in batch])
        loss = loss_fn([anchors, positives], torch.tensor([]))
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            recent = losses[-25:]
            progress(step + 1, len(batches), sum(recent) / len(recent))
    model.eval()
    return losses


def finetune(
    rows: Sequence[tuple[str, str]],
    out: Path,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 2e-5,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
    source_rows: Sequence[tuple[str, str]] | None = None,
    hold_out: float = 0.0,
) -> FinetuneInfo:
    """Fine-tune all-MiniLM-L6-v2 on (intent, text) rows and save it to ``out``, with a
    ``finetune.json``. AdamW (weight decay 0.01), linear warm-up over 10% of the steps
    then linear decay, gradient norm clipped at 1; seeded. ``source_rows``: all exemplars
    when ``rows`` leave some out (``hold_out``), for the staleness check."""
    if epochs < 1:
        raise InputError(f"epochs must be at least 1, got {epochs}")
    if not lr > 0:
        raise InputError(f"learning rate must be above 0, got {lr}")
    check_rows(rows)
    prepare_output(out, force)
    batches = training_batches(rows, epochs, batch_size, seed)
    if not batches:
        raise InputError("no training batch could be made from these exemplars")
    import torch

    # Seeded before the model loads, as the published runs were (loading draws from it).
    torch.manual_seed(seed)
    base = SentenceTransformerEncoder()
    started = time.perf_counter()
    losses = _train(base.model, batches, lr, progress)
    train_s = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    base.model.save(str(out))
    head, tail = losses[:10], losses[-10:]
    info = FinetuneInfo(
        base_model=base.model_id,
        exemplars=len(rows),
        intents=len({intent for intent, _ in rows}),
        content_hash=rows_hash(rows if source_rows is None else source_rows),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        steps=len(batches),
        train_s=round(train_s, 1),
        loss_first=round(sum(head) / len(head), 4),
        loss_last=round(sum(tail) / len(tail), 4),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        hold_out=hold_out,
    )
    info.write(out)
    return info


@dataclass(frozen=True)
class FinetuneSettings:
    """How :func:`finetune_from` trains; ``hold_out`` is the share of each intent's
    exemplars left out, drawn like ``eval intents --tune-min-similarity`` (seed 0)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 2e-5
    seed: int = 0
    hold_out: float = 0.0
    force: bool = False


def labelled_exemplars(
    intents_dir: Path | None = None, exemplars: Path | None = None
) -> list[LabelledText]:
    """The exemplars of an intents directory, or the rows of a ``*.intents.jsonl``."""
    if intents_dir is not None:
        intent_set = load_intents(intents_dir)
        return [
            LabelledText(e.text, intent.name)
            for intent in intent_set.intents
            for e in intent.exemplars
        ]
    if exemplars is None:
        raise InputError("give an intents directory or an exemplars file to train on")
    return read_intents_jsonl(exemplars)


def training_rows(
    labelled: Sequence[LabelledText], hold_out: float
) -> tuple[list[Pair], list[Pair]]:
    """(intent, text) rows to train on, and every in-scope row of the source (for the
    staleness hash); ``hold_out`` of each intent's rows is left out of the first."""
    if not 0 <= hold_out < 1:
        raise InputError(f"--hold-out must be from 0 to below 1, got {hold_out}")
    every = [(row.intent, row.text) for row in labelled if row.intent is not None]
    kept = list(labelled)
    if hold_out > 0:
        kept, _ = split_by_intent(kept, hold_out, seed=0)
    return [(row.intent, row.text) for row in kept if row.intent is not None], every


def finetune_from(
    out: Path,
    *,
    intents_dir: Path | None = None,
    exemplars: Path | None = None,
    settings: FinetuneSettings = FinetuneSettings(),
    progress: Progress | None = None,
    announce: Announce | None = None,
) -> FinetuneInfo:
    """``modeltriage finetune``: read the exemplars of ``intents_dir`` (or the
    ``exemplars`` file), hold some out, and fine-tune on the rest into ``out``."""
    rows, every = training_rows(labelled_exemplars(intents_dir, exemplars), settings.hold_out)
    if announce is not None:
        announce(len(rows), len({intent for intent, _ in rows}))
    return finetune(
        rows,
        out,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        force=settings.force,
        progress=progress,
        source_rows=every,
        hold_out=settings.hold_out,
    )
