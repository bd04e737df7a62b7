"""Encoder backends: the ONNX export cache, its faults, fidelity to the torch encoder, and
serving without torch. The export itself (torch) runs once per module, in a temp cache."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modeltriage import ConfigError, HashingEncoder, Router, StaleIndexError, build_index
from modeltriage.core import onnx_files
from modeltriage.core.config import EncoderSettings
from modeltriage.core.encoders import (
    SentenceTransformerEncoder,
    backend_of,
    model_digest,
    packaged_model_dir,
)
from modeltriage.core.onnx_encoder import OnnxEncoder
from modeltriage.core.onnx_export import INT8_NAME
from modeltriage.core.onnx_tokenizer import ENCODE_BATCH
from modeltriage.learn.checks import check_index
from tests.conftest import ROUTER_YAML, TINY_INTENTS, write_intents

REPO = Path(__file__).resolve().parent.parent

# Varied on purpose: one word, punctuation, empty, non-Latin, emoji, code, long (truncated).
FIDELITY_TEXTS = [
    "hi",
    "thanks",
    "?",
    "",
    "What are your opening hours on Sunday?",
    "cancel my subscription",
    "I want a refund for my broken order",
    "how do I get my money back for a damaged item",
    "my python script throws a KeyError traceback",
    "debug this javascript promise that never resolves",
    "SELECT * FROM users WHERE id = 1; -- why is this slow",
    "Write a haiku about autumn leaves",
    "Explain the difference between TCP and UDP in two sentences.",
    "Quelle est la politique de retour pour les articles soldés ?",
    "Wie lange dauert der Versand nach Österreich?",
    "注文をキャンセルしたいです",
    "🤖🤖🤖 robots!!!",
    "URGENT: my account was hacked and someone changed the password",
    "Compare the iPhone 15 and the Pixel 8 for battery life",
    "Can you summarise this contract clause about indemnification?",
    "what is 17 * 23",
    "Translate 'good morning' into Spanish",
    "my order #A-1234-XYZ never arrived",
    "The quick brown fox jumps over the lazy dog",
    "Why does my Rust borrow checker complain about a mutable reference in a loop?",
    "Plan a 3-day trip to Kyoto with a budget of $500",
    "reset password",
    "I'd like to speak to a human please",
    "refund " * 400,
    "Is it safe to take ibuprofen with coffee?",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


# --- the cache and its files (no export) -------------------------------------------


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELTRIAGE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_files.cache_root() == tmp_path / "xdg" / "modeltriage"
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path / "mine"))
    assert onnx_files.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("MODELTRIAGE_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert onnx_files.cache_root() == Path.home() / ".cache" / "modeltriage"


def test_sealed_file_is_checked(tmp_path: Path) -> None:
    final = tmp_path / "model.onnx"
    assert onnx_files.problem(final) == "is missing"
    tmp = onnx_files.temp_path(final)
    tmp.write_bytes(b"x" * 1000)
    onnx_files.seal(tmp, final)
    assert not tmp.exists() and onnx_files.problem(final) is None
    assert onnx_files.checked_sha256(final) == onnx_files.file_sha256(final)
    final.write_bytes(b"x" * 10)  # truncated after sealing
    with pytest.raises(ConfigError) as info:
        onnx_files.checked_sha256(final)
    message = str(info.value)
    assert "\n" not in message and str(final) in message and "modeltriage build" in message
    assert "truncated" in message
    onnx_files.sidecar(final).unlink()  # a killed export never wrote its checksum
    assert "did not finish" in (onnx_files.problem(final) or "")


def test_unwritable_cache_exports_to_a_temp_dir_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING, logger="modeltriage"):
        folder = onnx_files.writable_export_dir("ab" * 32)
    assert folder.is_dir() and blocker not in folder.parents
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(blocker) in warnings[0].getMessage()


def test_backend_setting() -> None:
    assert EncoderSettings().backend == "onnx-int8"
    assert EncoderSettings(backend="onnx-int8", threads=2).threads == 2
    for bad in ({"backend": "tensorrt"}, {"threads": 0}, {"threads": 10**9}, {"threads": "x"}):
        with pytest.raises(ValueError):
            EncoderSettings.model_validate(bad)


def test_backend_of_an_encoder_id() -> None:
    assert backend_of("hashing-fake-256") == ("hashing-fake-256", "torch")
    onnx_id = "sentence-transformers/all-MiniLM-L6-v2+ft:0123456789ab [onnx-int8 1b087cf5f725]"
    assert backend_of(onnx_id) == (
        "sentence-transformers/all-MiniLM-L6-v2+ft:0123456789ab",
        "onnx-int8",
    )


@pytest.mark.parametrize(
    ("config", "mean"),
    [
        ({"embedding_dimension": 384, "pooling_mode": "mean"}, True),  # sentence-transformers 6
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, True),  # before
        ({"pooling_mode": ["mean", "max"]}, False),
        ({"pooling_mode": "cls"}, False),
        ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, False),
        ({"pooling_mode_mean_tokens": False}, False),
        ({}, False),
    ],
)
def test_a_fine_tuned_model_with_mean_pooling_in_either_format_runs_on_onnx(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: dict[str, object], mean: bool
) -> None:
    """`modeltriage finetune` saves with sentence-transformers 6, which writes the pooling
    as ``pooling_mode``: the ONNX backends (the default) must take that model."""
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps(config))
    (model / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(ConfigError) as info:
        OnnxEncoder("onnx", model)
    # Past the pooling check, the next refusal is the export this test never made.
    assert ("mean pooling only" in str(info.value)) is not mean
    assert ("is missing" in str(info.value)) is mean


def test_truncation_length_of_a_model_saved_by_either_sentence_transformers(
    tmp_path: Path,
) -> None:
    from modeltriage.core.onnx_tokenizer import max_seq_length

    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    assert max_seq_length(tmp_path) == 128
    # Version 6 (a `modeltriage finetune` output): the tokenizer's length, within positions.
    (tmp_path / "sentence_bert_config.json").write_text('{"module_output_name": "x"}')
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 256}')
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 512}')
    assert max_seq_length(tmp_path) == 256
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 1000000000000}')
    assert max_seq_length(tmp_path) == 512
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"tokenizer_config\.json: cannot read max_seq_length"):
        max_seq_length(tmp_path)


def test_check_reports_an_index_built_by_another_backend(
    tmp_path: Path, fake_encoder: HashingEncoder
) -> None:
    intents = onnx_intents(tmp_path / "intents", "onnx-int8")
    build_index(intents, encoder=fake_encoder)
    found = check_index(intents)
    assert found.problem is not None and "torch encoder backend" in found.problem
    assert "onnx-int8" in found.problem


@pytest.fixture(scope="module")
def weights_digest() -> str:
    return model_digest(packaged_model_dir())


def test_missing_export_is_an_error_naming_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights_digest: str
) -> None:
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        OnnxEncoder("onnx-int8")
    message = str(info.value)
    assert "is missing" in message and "modeltriage build" in message and "\n" not in message
    assert str(onnx_files.export_dir(weights_digest) / INT8_NAME) in message


def test_corrupt_export_is_an_error_never_a_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights_digest: str
) -> None:
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path))
    final = onnx_files.export_dir(weights_digest) / INT8_NAME
    final.parent.mkdir(parents=True)
    tmp = onnx_files.temp_path(final)
    tmp.write_bytes(b"\x08\x07garbage, not a protobuf" * 50)
    onnx_files.seal(tmp, final)  # checksum matches: only onnxruntime can tell
    with pytest.raises(ConfigError) as info:
        OnnxEncoder("onnx-int8")
    message = str(info.value)
    assert "cannot be loaded" in message and str(final) in message
    assert "modeltriage build" in message and "\n" not in message


def test_export_without_torch_names_the_extra(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.modules["torch"] = None
        from modeltriage import MissingDependencyError
        from modeltriage.core.onnx_export import export_fp32
        try:
            export_fp32(Path("."), Path({str(tmp_path / "m.onnx")!r}))
        except MissingDependencyError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "modeltriage[encoder]" in out.stdout


# --- the real export (torch, once per module) --------------------------------------


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private cache holding the exported fp32 and int8 models."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELTRIAGE_CACHE_DIR", str(cache))
        OnnxEncoder("onnx-int8", export=True)
        yield cache


@pytest.mark.real
def test_export_is_cached_atomic_and_reused(onnx_cache: Path, weights_digest: str) -> None:
    folder = onnx_files.export_dir(weights_digest, onnx_cache)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [INT8_NAME, INT8_NAME + ".sha256", "model.onnx", "model.onnx.sha256"]
    before = (folder / INT8_NAME).stat().st_mtime_ns
    again = OnnxEncoder("onnx-int8", export=True)
    assert (folder / INT8_NAME).stat().st_mtime_ns == before and again.path == folder / INT8_NAME
    assert "onnx-int8" in again.model_id
    assert again.model_id != OnnxEncoder("onnx").model_id


@pytest.mark.real
def test_fp32_matches_torch(onnx_cache: Path, real_encoder: SentenceTransformerEncoder) -> None:
    reference = real_encoder.encode(FIDELITY_TEXTS)
    fp32 = OnnxEncoder("onnx").encode(FIDELITY_TEXTS)
    assert fp32.shape == reference.shape and fp32.dtype == np.float32
    assert cosines(fp32, reference).min() >= 0.999


@pytest.mark.real
def test_int8_meets_the_fidelity_target(
    onnx_cache: Path, real_encoder: SentenceTransformerEncoder
) -> None:
    """Issue 10's bar: cosine(int8, torch) >= 0.99 for every text, one-word texts, the
    empty text and a truncated 2,400-character text included (0.9952 measured)."""
    reference = real_encoder.encode(FIDELITY_TEXTS)
    found = cosines(OnnxEncoder("onnx-int8").encode(FIDELITY_TEXTS), reference)
    assert found.min() >= 0.99, [FIDELITY_TEXTS[i] for i in np.argsort(found)[:3]]
    assert float(np.median(found)) >= 0.998


@pytest.mark.real
def test_many_texts_are_embedded_in_length_sorted_batches_in_order(onnx_cache: Path) -> None:
    """A build embeds thousands of texts in one call: they go through in batches of
    similar length (3x faster on 3,000 CLINC150 texts) and come back in the given order."""
    encoder = OnnxEncoder("onnx-int8")
    texts = [*FIDELITY_TEXTS, *(f"where is order number {i}?" * (i % 3 + 1) for i in range(12))]
    assert len(texts) > ENCODE_BATCH
    together = encoder.encode(texts)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert together.shape == (len(texts), encoder.dim)
    assert cosines(together, alone).min() >= 0.9999


def onnx_intents(directory: Path, backend: str) -> Path:
    router_yaml = ROUTER_YAML + f"encoder: {{backend: {backend}}}\n"
    return write_intents(directory, TINY_INTENTS, router_yaml)


@pytest.mark.real
def test_index_names_the_backend_and_refuses_another(onnx_cache: Path, tmp_path: Path) -> None:
    intents = onnx_intents(tmp_path / "intents", "onnx-int8")
    manifest = build_index(intents)
    assert "[onnx-int8 " in manifest.encoder
    assert Router.load(intents, log=False).route("when do you open").intent == "hours"
    fp32 = OnnxEncoder("onnx")
    with pytest.raises(StaleIndexError, match="onnx-int8"):
        Router.load(intents, encoder=fp32, log=False)


@pytest.mark.real
def test_serving_an_onnx_index_imports_no_torch(onnx_cache: Path, tmp_path: Path) -> None:
    intents = onnx_intents(tmp_path / "intents", "onnx-int8")
    build_index(intents)
    code = textwrap.dedent(
        f"""
        import sys
        from modeltriage import Router
        router = Router.load({str(intents)!r}, log=False)
        assert router.route("when do you open").intent == "hours"
        heavy = {{"torch", "transformers", "sentence_transformers"}} & set(sys.modules)
        print(sorted(heavy))
        """
    )
    env = {"MODELTRIAGE_CACHE_DIR": str(onnx_cache), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"}
    env["PYTHONPATH"] = str(REPO / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.real
def test_serving_a_fresh_copy_uses_the_default_backend_without_torch(
    onnx_cache: Path, tmp_path: Path
) -> None:
    """What `make serve` does on a fresh clone: build the missing index with the default
    backend (the export runs in a child process), then serve it; the serving process
    never imports torch."""
    intents = tmp_path / "intents"
    shutil.copytree(REPO / "intents", intents, ignore=shutil.ignore_patterns(".index", ".log*"))
    code = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from modeltriage import Router
        from modeltriage.http.app import create_app
        router = Router.load({str(intents)!r}, build_if_needed=True, log=False)
        with TestClient(create_app(router=router)) as client:
            answer = client.post("/route", json={{"text": "what are your hours?"}})
        print(router.manifest.encoder)
        print(answer.status_code, answer.json()["intent"])
        print(sorted({{"torch", "transformers", "sentence_transformers"}} & set(sys.modules)))
        """
    )
    env = {"MODELTRIAGE_CACHE_DIR": str(onnx_cache), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"}
    env["PYTHONPATH"] = str(REPO / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    encoder, answer, heavy = out.stdout.strip().splitlines()
    assert "[onnx-int8 " in encoder
    assert answer == "200 store_hours" and heavy == "[]"


def test_a_large_embedding_table_is_stored_as_int8_rows_and_looked_up_exactly() -> None:
    """The vocabulary table is most of the int8 file (47 of 59 MB in MiniLM): it is
    stored as int8 with a scale per row, and a lookup widens just the rows it reads."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from modeltriage.core.onnx_quantise import quantise_tables

    rng = np.random.default_rng(0)
    table = (rng.standard_normal((300, 16)) * rng.uniform(0.01, 3, (300, 1))).astype(np.float32)
    small = rng.standard_normal((4, 16)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["rows"]),
            helper.make_node("Gather", ["small", "kinds"], ["kind_rows"]),
            helper.make_node("Add", ["rows", "kind_rows"], ["out"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "l"]),
            helper.make_tensor_value_info("kinds", TensorProto.INT64, ["b", "l"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "l", 16])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(small, "small")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    quantise_tables(model, min_values=1000)
    onnx.checker.check_model(model)
    kinds = {init.name: init.data_type for init in model.graph.initializer}
    assert "table" not in kinds and kinds["small"] == TensorProto.FLOAT  # 64 values: kept
    assert TensorProto.INT8 in kinds.values()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 5, 299], [7, 7, 1]], dtype=np.int64)
    kind_ids = np.array([[0, 1, 2], [3, 0, 1]], dtype=np.int64)
    (found,) = session.run(None, {"ids": ids, "kinds": kind_ids})
    expected = table[ids] + small[kind_ids]
    # Rounding to one of 255 steps of the row's own range: half a step at most.
    half_step = np.abs(table[ids]).max(axis=-1, keepdims=True) / 127 / 2
    assert np.all(np.abs(found - expected) <= half_step + 1e-6)


@pytest.mark.real
def test_the_int8_export_keeps_no_float_table(onnx_cache: Path, weights_digest: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto

    from modeltriage.core.onnx_quantise import TABLE_MIN_VALUES

    path = onnx_files.export_dir(weights_digest, onnx_cache) / INT8_NAME
    model = onnx.load(str(path))
    large = [
        init.name
        for init in model.graph.initializer
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= TABLE_MIN_VALUES
    ]
    assert large == []
    assert path.stat().st_size < 30_000_000  # 59 MB with the float vocabulary table


@pytest.mark.real
def test_a_bulk_embeds_on_every_core_with_the_same_vectors(
    onnx_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build's bulk of texts gets a session with a thread per core, let go after the
    call; the vectors are the one-thread session's, bit for bit."""
    from modeltriage.core import onnx_encoder

    texts = [f"{FIDELITY_TEXTS[i % len(FIDELITY_TEXTS)]} {i}" for i in range(40)]
    one = OnnxEncoder("onnx-int8", threads=1).encode(texts)
    sessions: list[int] = []
    real_session = onnx_encoder._session

    def counting(path: Path, threads: int) -> object:
        sessions.append(threads)
        return real_session(path, threads)

    monkeypatch.setattr(onnx_encoder, "_session", counting)
    monkeypatch.setattr(onnx_encoder, "BULK_TEXTS", 30)
    monkeypatch.setattr(onnx_encoder, "available_cores", lambda: 2)
    default = OnnxEncoder("onnx-int8")
    bulk = default.encode(texts)
    assert sessions == [1, 2]  # the serving session, then the bulk one for this call
    assert np.array_equal(bulk, one)
    default.encode(texts[:20])  # under the bulk size: the serving session only
    assert sessions == [1, 2]
    OnnxEncoder("onnx-int8", threads=1).encode(texts)  # threads set: never a bulk session
    assert sessions == [1, 2, 1]
