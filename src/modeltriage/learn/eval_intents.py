"""``eval intents`` as one call: check the request and the labelled files, evaluate, and
write the JSON report.

Every problem a user can fix is found before embedding (minutes on a large file), and
named by file and line: a test intent without training rows, a text the router would
refuse, no out-of-scope rows to tune on. Labels that are not valid intent names (BANKING77's
``reverted_card_payment?``) are renamed, the same way in both files, and the report keeps
the original labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from modeltriage.core.config import ROUTER_CONFIG_FILE, RouterConfig
from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import Intent, load_router_config
from modeltriage.errors import ConfigError, EvaluationError, InputError
from modeltriage.learn.datasets import LabelledText, read_intents_jsonl, rename_labels
from modeltriage.learn.evaluation import (
    EvalOptions,
    IntentEvaluation,
    evaluate_intents,
    first_refused,
)


@dataclass(frozen=True)
class IntentEvalRun:
    """What ``eval intents`` was asked: the files, the options and where the report goes.

    ``intents_dir`` gives router.yaml (models, prices, thresholds); its intent files are
    not used. ``encoder_path``: a fine-tuned model directory instead of the packaged one.
    """

    exemplars: Path
    test: Path
    intents_dir: Path
    options: EvalOptions = field(default_factory=EvalOptions)
    json_path: Path | None = None
    encoder_path: Path | None = None


def check_options(run: IntentEvalRun) -> None:
    """Refuse arguments out of range, before anything is read."""
    options = run.options
    if options.per_intent is not None and options.per_intent < 1:
        raise InputError("--per-intent must be at least 1")
    if options.top_k is not None and not 1 <= options.top_k <= 1000:
        raise InputError("--top-k must be between 1 and 1000")
    if options.min_similarity is not None and not -1 <= options.min_similarity <= 1:
        raise InputError("--min-similarity/--floor is a cosine similarity: between -1 and 1")
    if run.json_path is not None and not run.json_path.parent.is_dir():
        # Found now rather than after minutes of embedding.
        raise InputError(f"--json: directory {run.json_path.parent} does not exist")


def load_config_dir(intents_dir: Path) -> RouterConfig:
    """The router.yaml of an intents directory."""
    if not intents_dir.is_dir():
        raise ConfigError("intents directory not found", intents_dir)
    return load_router_config(intents_dir / ROUTER_CONFIG_FILE)


def row_lines(path: Path) -> list[int]:
    """Line number of each row ``read_intents_jsonl`` returns (it skips blank lines), read
    the same way (text mode, universal newlines) so the two stay aligned."""
    with path.open(encoding="utf-8") as handle:
        return [number for number, line in enumerate(handle, start=1) if line.strip()]


def is_intent_name(name: str) -> bool:
    """Whether ``name`` is a valid intent name, exactly as given."""
    try:
        # Ask the schema itself, so the rule cannot drift; a name it would strip is
        # refused too, since the stripped name would never equal the gold label.
        intent = Intent.model_validate({"name": name, "difficulty": "easy", "exemplars": ["x"]})
        return intent.name == name
    except ValidationError:
        return False


def check_training(path: Path, rows: Sequence[LabelledText], tune: bool) -> None:
    """Training rows: some in scope, and out-of-scope rows to tune min_similarity on when
    ``tune``. (Labels that are not intent names are renamed by :func:`load_inputs`.)"""
    if not any(r.intent is not None for r in rows):
        raise ConfigError("no in-scope rows (every intent is null): nothing to route to", path)
    if tune and not any(r.intent is None for r in rows):
        raise ConfigError(
            "--tune-floor needs out-of-scope rows (intent null) to choose min_similarity "
            "on; give --min-similarity instead",
            path,
        )


def check_test(path: Path, rows: Sequence[LabelledText], train_intents: set[str]) -> None:
    """Test rows: at least one, and only intents the training rows can predict."""
    if not rows:
        raise ConfigError("no rows to evaluate", path)
    for position, row in enumerate(rows):
        if row.intent is not None and row.intent not in train_intents:
            raise ConfigError(
                f"intent {row.intent!r} has no training rows, so the router cannot predict it",
                path,
                row_lines(path)[position],
            )


def check_routable(path: Path, rows: Sequence[LabelledText], config: RouterConfig) -> None:
    """Every row is a text the router accepts (``limits.max_text_bytes``...)."""
    refused = first_refused(rows, config.limits.max_text_bytes)
    if refused is not None:
        position, why = refused
        raise ConfigError(why, path, row_lines(path)[position])


def load_inputs(
    run: IntentEvalRun,
) -> tuple[RouterConfig, list[LabelledText], list[LabelledText], dict[str, str]]:
    """(config, training rows, test rows, {intent name: original label} of the labels
    renamed to valid intent names), every check passed."""
    check_options(run)
    config = load_config_dir(run.intents_dir)
    train = read_intents_jsonl(run.exemplars)
    test = read_intents_jsonl(run.test)
    tune = run.options.tune_min_similarity
    check_training(run.exemplars, train, tune)
    check_test(run.test, test, {r.intent for r in train if r.intent is not None})
    check_routable(run.test, test, config)
    if tune:
        check_routable(run.exemplars, train, config)
    (train, test), renamed = rename_labels(train, test)
    return config, train, test, renamed


def write_json(run: IntentEvalRun, report: IntentEvaluation, encoder: Encoder) -> None:
    """The full report, with what produced it, at ``run.json_path``."""
    if run.json_path is None:
        return
    payload = {
        "command": "eval intents",
        "exemplars_file": str(run.exemplars),
        "test_file": str(run.test),
        "intents_dir": str(run.intents_dir),
        "encoder": encoder.model_id,
        **report.as_dict(),
    }
    try:
        run.json_path.write_text(
            json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    except OSError as exc:
        raise EvaluationError(f"{run.json_path}: cannot write the report: {exc.strerror}") from None


def run_intent_eval(run: IntentEvalRun, encoder: Encoder | None = None) -> IntentEvaluation:
    """Check, evaluate and write the JSON report; ``encoder`` defaults to the packaged
    sentence-transformers model (or ``run.encoder_path``), loaded only after the checks."""
    config, train, test, renamed = load_inputs(run)
    if encoder is None:
        from modeltriage.core.encoders import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(model_path=run.encoder_path)
    report = evaluate_intents(train, test, config, encoder, run.options)
    report = replace(report, renamed_labels=renamed)
    write_json(run, report, encoder)
    return report
