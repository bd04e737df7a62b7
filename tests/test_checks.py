"""modeltriage.learn.checks: the index verdict `modeltriage check` prints."""

from __future__ import annotations

from pathlib import Path

from modeltriage import HashingEncoder, build_index, load_intents
from modeltriage.core.encoders import fine_tuned_model_id
from modeltriage.core.index import exemplar_rows
from modeltriage.learn.checks import check_index
from modeltriage.learn.finetune import FINETUNE_FILE, FinetuneInfo, rows_hash

from .conftest import ROUTER_YAML, TINY_INTENTS, TORCH_BACKEND, write_intents


def test_missing_stale_and_current(tiny_dir: Path, fake_encoder: HashingEncoder) -> None:
    found = check_index(tiny_dir)
    assert (found.intents, found.exemplars, found.current) == (3, 9, False)
    assert found.problem is not None and found.problem.startswith("index: no index in ")
    build_index(tiny_dir, encoder=fake_encoder)
    found = check_index(tiny_dir)
    assert found.current and found.notes == () and found.manifest is not None
    assert found.manifest.encoder == fake_encoder.model_id
    built = found.manifest.built_at
    hours = tiny_dir / "hours.yaml"
    hours.write_text(hours.read_text() + "  - are you open on new year's day\n")
    found = check_index(tiny_dir)
    assert found.exemplars == 10 and found.problem is not None
    assert found.problem.startswith(f"index: stale (built {built}): it is stale: built from 9")


def test_an_injected_encoder_must_have_built_the_index(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    assert check_index(tiny_dir, fake_encoder.model_id).current
    found = check_index(tiny_dir, "other")
    assert found.problem == "index: built with encoder hashing-fake-256, the router uses other"


class _FineTunedFake(HashingEncoder):
    """Stands for an index built by a fine-tuned encoder: only its id matters here."""

    def __init__(self, model_id: str) -> None:
        super().__init__()
        self._id = model_id

    @property
    def model_id(self) -> str:
        return self._id


def _fake_fine_tune(model_dir: Path, rows: list[tuple[str, str]]) -> None:
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"not really weights")
    info = FinetuneInfo(
        base_model="base",
        exemplars=len(rows),
        intents=len({i for i, _ in rows}),
        content_hash=rows_hash(rows),
        epochs=1,
        batch_size=2,
        lr=1e-5,
        seed=0,
        steps=1,
        train_s=0.1,
        loss_first=1.0,
        loss_last=0.5,
        created_at="2026-01-01T00:00:00+00:00",
    )
    info.write(model_dir)


def test_fine_tuned_encoder_named_by_router_yaml(tmp_path: Path) -> None:
    intents = write_intents(tmp_path / "intents", TINY_INTENTS, ROUTER_YAML + TORCH_BACKEND)
    rows = [(r.intent, r.text) for r in exemplar_rows(load_intents(intents).intents)]
    model_dir = intents / "encoder-ft"
    _fake_fine_tune(model_dir, rows)
    wanted = fine_tuned_model_id(model_dir)

    # built by the packaged encoder, router.yaml names none: current
    build_index(intents, encoder=HashingEncoder())
    assert check_index(intents).current
    # built by a fine-tune, router.yaml names none
    build_index(intents, encoder=_FineTunedFake(wanted))
    assert check_index(intents).problem == (
        f"index: built with the fine-tuned encoder {wanted}, router.yaml names none"
    )

    (intents / "router.yaml").write_text(
        ROUTER_YAML + "encoder:\n  backend: torch\n  path: encoder-ft\n"
    )
    found = check_index(intents)
    assert found.current and found.notes == (f"encoder: fine-tuned {model_dir} ({wanted})",)
    build_index(intents, encoder=HashingEncoder())
    found = check_index(intents)
    assert (
        found.problem == f"index: built with encoder hashing-fake-256, router.yaml names {wanted}"
    )

    # new exemplars: the fine-tune is older than them, which is a note, not a problem
    hours = intents / "hours.yaml"
    hours.write_text(hours.read_text() + "  - are you open on new year's day\n")
    build_index(intents, encoder=_FineTunedFake(wanted))
    found = check_index(intents)
    assert found.current and len(found.notes) == 2
    assert "fine-tuned on other exemplars (9 then, 10 now)" in found.notes[0]

    (model_dir / "model.safetensors").unlink()
    found = check_index(intents)
    assert found.error is not None and "not a sentence-transformers model directory" in found.error
    (model_dir / FINETUNE_FILE).unlink()
    model_dir.rmdir()
    found = check_index(intents)
    assert found.error == f"encoder.path {model_dir} is not a directory (router.yaml)"
    assert not found.current and found.notes == () and found.problem is None
