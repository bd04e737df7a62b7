"""`modeltriage finetune`: the batches (pure), the output rules, and a real fine-tune of
all-MiniLM-L6-v2 for a few steps that a router then loads through `encoder.path`."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from modeltriage import IndexStateError, InputError, Router
from modeltriage.cli.main import main
from modeltriage.core.encoders import SentenceTransformerEncoder
from modeltriage.learn.datasets import LabelledText
from modeltriage.learn.finetune import (
    FINETUNE_FILE,
    FinetuneInfo,
    FinetuneSettings,
    check_rows,
    finetune_from,
    labelled_exemplars,
    prepare_output,
    read_info,
    rows_hash,
    training_batches,
    training_rows,
)

from .conftest import ROUTER_YAML, TINY_INTENTS, TORCH_BACKEND, write_intents

ROWS = [(f"intent{i}", f"text {i}-{j}") for i in range(5) for j in range(4)] + [("lonely", "x")]


def test_every_exemplar_is_an_anchor_once_per_epoch_in_batches_of_distinct_intents() -> None:
    batches = training_batches(ROWS, epochs=2, batch_size=3, seed=0)
    anchors = Counter(a for batch in batches for a, _ in batch)
    # the lonely intent has no positive: it is left out; an anchor once per epoch at most
    # (an epoch's last pairs of one intent cannot share a batch, and a lone pair is dropped)
    assert set(anchors) <= {t for i, t in ROWS if i != "lonely"}
    assert max(anchors.values()) == 2 and sum(anchors.values()) >= 0.8 * 2 * 20
    intent_of = dict((t, i) for i, t in ROWS)
    for batch in batches:
        assert 2 <= len(batch) <= 3
        intents = [intent_of[a] for a, _ in batch]
        assert len(set(intents)) == len(intents)
        assert all(intent_of[p] == intent_of[a] and p != a for a, p in batch)
    assert training_batches(ROWS, 2, 3, seed=0) == batches
    assert training_batches(ROWS, 2, 3, seed=1) != batches


def test_batches_refuse_a_batch_of_one() -> None:
    with pytest.raises(InputError, match="batch size must be at least 2"):
        training_batches(ROWS, 1, 1, 0)


@pytest.mark.parametrize(
    "rows",
    [[("a", "1"), ("a", "2")], [("a", "1"), ("a", "2"), ("b", "3")], []],
)
def test_fine_tuning_needs_two_intents_with_two_exemplars(rows: list[tuple[str, str]]) -> None:
    with pytest.raises(InputError, match="at least two intents"):
        check_rows(rows)


def test_output_directory_rules(tmp_path: Path) -> None:
    prepare_output(tmp_path / "new", force=False)
    (tmp_path / "empty").mkdir()
    prepare_output(tmp_path / "empty", force=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no earlier fine-tune"):
        prepare_output(other, force=True)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / FINETUNE_FILE).write_text("{}")
    with pytest.raises(InputError, match="--force"):
        prepare_output(earlier, force=False)
    prepare_output(earlier, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        prepare_output(tmp_path / "file", force=True)


def test_info_round_trip_and_a_corrupt_record(tmp_path: Path) -> None:
    info = FinetuneInfo("base", 20, 5, rows_hash(ROWS), 1, 64, 2e-5, 0, 3, 1.5, 1.0, 0.5, "now")
    info.write(tmp_path)
    assert read_info(tmp_path) == info
    assert read_info(tmp_path / "missing") is None
    (tmp_path / FINETUNE_FILE).write_text('{"base_model": 1}')
    from modeltriage import ConfigError

    with pytest.raises(ConfigError, match=r"finetune\.json"):
        read_info(tmp_path)


def test_a_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    from modeltriage import ConfigError

    with pytest.raises(ConfigError, match="fine-tuned model directory not found"):
        SentenceTransformerEncoder(model_path=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no model\.safetensors"):
        SentenceTransformerEncoder(model_path=tmp_path / "empty")


def test_labelled_exemplars_from_an_intents_dir_or_a_file(tmp_path: Path) -> None:
    intents = write_intents(tmp_path / "intents", TINY_INTENTS)
    from_dir = labelled_exemplars(intents_dir=intents)
    assert from_dir and all(row.intent for row in from_dir)
    path = tmp_path / "x.intents.jsonl"
    path.write_text('{"text": "hi", "intent": "a"}\n{"text": "what", "intent": null}\n')
    assert labelled_exemplars(exemplars=path) == [
        LabelledText("hi", "a"),
        LabelledText("what", None),
    ]
    with pytest.raises(InputError, match="give an intents directory"):
        labelled_exemplars()


def test_training_rows_hold_out_per_intent_but_hash_every_row() -> None:
    labelled = [LabelledText(t, i) for i, t in ROWS] + [LabelledText("oos", None)]
    rows, every = training_rows(labelled, 0.0)
    assert rows == every == ROWS
    rows, every = training_rows(labelled, 0.5)
    assert every == ROWS
    assert Counter(i for i, _ in rows) == {f"intent{i}": 2 for i in range(5)} | {"lonely": 1}
    assert training_rows(labelled, 0.5) == (rows, every)  # seeded
    for share in (-0.1, 1.0):
        with pytest.raises(InputError, match="--hold-out must be from 0 to below 1"):
            training_rows(labelled, share)


def test_finetune_from_announces_then_checks_before_loading_a_model(tmp_path: Path) -> None:
    path = tmp_path / "x.intents.jsonl"
    path.write_text('{"text": "hi", "intent": "a"}\n{"text": "hey", "intent": "a"}\n')
    heard: list[tuple[int, int]] = []
    with pytest.raises(InputError, match="at least two intents"):
        finetune_from(
            tmp_path / "out",
            exemplars=path,
            settings=FinetuneSettings(),
            announce=lambda rows, intents: heard.append((rows, intents)),
        )
    assert heard == [(2, 1)] and not (tmp_path / "out").exists()


@pytest.mark.real
def test_fine_tune_then_route_with_the_fine_tuned_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intents = write_intents(tmp_path / "intents", TINY_INTENTS, ROUTER_YAML + TORCH_BACKEND)
    model_dir = tmp_path / "intents" / "encoder-ft"
    argv = ["finetune", "--intents", str(intents), "--out", str(model_dir), "--batch-size", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "steps" in out and "encoder: {path:" in out
    info = read_info(model_dir)
    assert info is not None and info.exemplars == 9 and info.intents == 3
    assert main(argv) == 1  # an earlier fine-tune is only replaced with --force
    assert "--force" in capsys.readouterr().err

    fine = SentenceTransformerEncoder(model_path=model_dir)
    base = SentenceTransformerEncoder()
    assert fine.model_id.startswith(base.BASE_ID + "+ft:") and fine.model_id != base.model_id

    # an index built with the packaged encoder is refused once router.yaml names the
    # fine-tuned one, and `check` says what to run
    assert main(["build", "--intents", str(intents)]) == 0
    (intents / "router.yaml").write_text(
        ROUTER_YAML + "encoder:\n  backend: torch\n  path: encoder-ft\n"
    )
    assert main(["check", "--intents", str(intents)]) == 1
    assert "router.yaml names" in capsys.readouterr().out
    with pytest.raises(IndexStateError, match="modeltriage build"):
        Router.load(intents, log=False)
    assert main(["build", "--intents", str(intents)]) == 0
    assert main(["check", "--intents", str(intents)]) == 0
    assert "encoder: fine-tuned" in capsys.readouterr().out
    with Router.load(intents, log=False) as router:
        assert router.encoder.model_id == fine.model_id
        assert router.route("my python script throws a KeyError traceback").intent == "code"

    # new exemplars: the fine-tune still works, and check says it is stale
    hours = intents / "hours.yaml"
    hours.write_text(hours.read_text() + "  - are you open on new year's day\n")
    assert main(["build", "--intents", str(intents)]) == 0
    assert main(["check", "--intents", str(intents)]) == 0
    assert "fine-tuned on other exemplars (9 then, 10 now)" in capsys.readouterr().out

    # router.yaml pointing at nothing
    shutil.rmtree(model_dir)
    assert main(["check", "--intents", str(intents)]) == 1
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.real
def test_a_fine_tuned_model_serves_on_the_default_onnx_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sentence-transformers 6 saves the pooling and the truncation length where earlier
    versions did not: the default backend (onnx-int8) must read both, and embed as torch."""
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path / "cache"))
    intents = write_intents(
        tmp_path / "intents", TINY_INTENTS, ROUTER_YAML + "encoder: {path: encoder-ft}\n"
    )
    model_dir = intents / "encoder-ft"
    argv = ["finetune", "--intents", str(intents), "--out", str(model_dir), "--batch-size", "3"]
    assert main(argv) == 0
    assert main(["build", "--intents", str(intents)]) == 0
    fine = SentenceTransformerEncoder(model_path=model_dir)
    texts = ["my python script throws a KeyError traceback", "are you open on sundays"]
    with Router.load(intents, log=False) as router:
        assert router.encoder.model_id.startswith(fine.model_id + " [onnx-int8 ")
        cosines = (router.encoder.encode(texts) * fine.encode(texts)).sum(axis=1)
        assert cosines.min() >= 0.99
        assert router.route(texts[0]).intent == "code"


def test_the_model_id_covers_every_file_but_the_record(tmp_path: Path) -> None:
    from modeltriage.core.encoders import model_digest

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"mean": true}')
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    first = model_digest(tmp_path)
    (tmp_path / FINETUNE_FILE).write_text("{}")  # the record does not change the vectors
    assert model_digest(tmp_path) == first
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    assert model_digest(tmp_path) != first
