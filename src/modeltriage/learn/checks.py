"""What `modeltriage check` verifies: the intent files load, and the saved index matches
them, the text view router.yaml asks for and the encoder that will embed queries.

Nothing is printed here: :func:`check_index` returns an :class:`IndexCheck` in the order
the command reports it, and the CLI prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from modeltriage.core.encoders import backend_of, fine_tuned_model_id
from modeltriage.core.index import Manifest, exemplar_rows, manifest_problem, read_manifest
from modeltriage.core.intents import IntentSet, load_intents
from modeltriage.errors import ConfigError, IndexStateError
from modeltriage.learn.finetune import read_info, rows_hash


@dataclass(frozen=True)
class IndexCheck:
    """The intents found and the verdict on their index.

    ``problem`` says why the index must be rebuilt (None: it is current); ``notes`` are
    remarks on the encoder, reported whatever the verdict; ``error`` is a configuration
    mistake a rebuild would not fix (the check stops there, without notes or verdict).
    """

    intents: int
    exemplars: int
    problem: str | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None
    manifest: Manifest | None = None

    @property
    def current(self) -> bool:
        return self.problem is None and self.error is None


def check_index(intents_dir: Path | str, encoder_id: str | None = None) -> IndexCheck:
    """Check the intents under ``intents_dir`` and their saved index.

    ``encoder_id``: the encoder the caller will route with, when it is not the one
    router.yaml names (an injected encoder); the index must have been built by it.
    Raises the intent files' own errors (``ConfigError``); everything else is reported,
    with notes on what the adapter cannot learn from (:func:`adapter_notes`).
    """
    intent_set = load_intents(intents_dir)
    found = _check_index(intent_set, encoder_id)
    if found.error is not None or not intent_set.config.adapter.enabled:
        return found
    return replace(found, notes=(*adapter_notes(intent_set), *found.notes))


def adapter_notes(intent_set: IntentSet) -> list[str]:
    """Intents the adapter learns nothing about, by name: one exemplar (no spread to
    learn from), or the same exemplars as another intent (nothing tells them apart).
    The adapter still builds; routing among them rests on the raw geometry."""
    notes: list[str] = []
    if intent_set.config.adapter.enabled and len(intent_set.intents) == 1:
        notes.append(
            "adapter: one intent, nothing to tell apart: the map is the identity until "
            "a second intent is added"
        )
    lonely = sorted(i.name for i in intent_set.intents if len(i.exemplars) == 1)
    if lonely:
        notes.append(
            f"adapter: {', '.join(lonely)} {'has' if len(lonely) == 1 else 'have'} one "
            "exemplar: add more so the adapter learns how it varies"
        )
    by_texts: dict[frozenset[str], list[str]] = {}
    for intent in intent_set.intents:
        texts = frozenset(e.text.strip().casefold() for e in intent.exemplars)
        by_texts.setdefault(texts, []).append(intent.name)
    for names in by_texts.values():
        if len(names) > 1:
            notes.append(
                f"adapter: {', '.join(sorted(names))} have the same exemplars: nothing "
                "tells them apart"
            )
    return notes


def _check_index(intent_set: IntentSet, encoder_id: str | None) -> IndexCheck:
    rows = exemplar_rows(intent_set.intents)
    found = IndexCheck(intents=len(intent_set.intents), exemplars=len(rows))
    try:
        _, manifest = read_manifest(intent_set.index_path)
    except IndexStateError as exc:
        return replace(found, problem=f"index: {exc}")
    view_key = intent_set.config.scoring.view_key
    config = intent_set.config
    problem = manifest_problem(
        manifest,
        rows,
        view_key,
        None,
        config.index,
        config.adapter.key,
        config.out_of_scope.key,
    )
    if problem is not None:
        return replace(found, problem=f"index: stale (built {manifest.built_at}): it {problem}")
    if encoder_id is not None:
        problem = None
        if manifest.encoder != encoder_id:
            problem = f"index: built with encoder {manifest.encoder}, the router uses {encoder_id}"
        return replace(found, problem=problem, manifest=manifest)
    return _check_encoder(intent_set, manifest, [(r.intent, r.text) for r in rows], found)


def _check_encoder(
    intent_set: IntentSet, manifest: Manifest, rows: list[tuple[str, str]], found: IndexCheck
) -> IndexCheck:
    """Whether the index was built by the encoder router.yaml names; notes when a
    fine-tuned encoder was trained on other exemplars than today's (it still works)."""
    built_with, backend = backend_of(manifest.encoder)
    path = intent_set.config.encoder.path
    if backend != intent_set.config.encoder.backend:
        wanted_backend = intent_set.config.encoder.backend
        mismatch = f"index: built with the {backend} encoder backend, router.yaml names "
        return replace(found, problem=mismatch + wanted_backend, manifest=manifest)
    if path is None:
        problem = None
        if "+ft:" in built_with:
            problem = (
                f"index: built with the fine-tuned encoder {built_with}, router.yaml names none"
            )
        return replace(found, problem=problem, manifest=manifest)
    base = Path(".") if intent_set.source is None else intent_set.source
    model_dir = base / path
    if not model_dir.is_dir():
        return replace(found, error=f"encoder.path {model_dir} is not a directory (router.yaml)")
    try:
        wanted = fine_tuned_model_id(model_dir)
        info = read_info(model_dir)
    except ConfigError as exc:
        return replace(found, error=str(exc))
    notes: list[str] = []
    if info is not None and info.content_hash != rows_hash(rows):
        notes.append(
            f"encoder: {model_dir} was fine-tuned on other exemplars ({info.exemplars} "
            f"then, {len(rows)} now): it still works; re-run modeltriage finetune to learn "
            "the new ones"
        )
    if built_with != wanted:
        problem = f"index: built with encoder {built_with}, router.yaml names {wanted}"
        return replace(found, problem=problem, notes=tuple(notes), manifest=manifest)
    notes.append(f"encoder: fine-tuned {model_dir} ({wanted})")
    return replace(found, notes=tuple(notes), manifest=manifest)
