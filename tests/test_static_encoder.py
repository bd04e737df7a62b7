"""The ``static`` encoder backend: its table file and faults, and (real) the distilled
table, its vectors, an index built with it, and serving it without torch or onnxruntime.
The distillation runs once per module, in a temporary cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modeltriage import ConfigError, OnnxEncoder, Router, StaleIndexError, build_index
from modeltriage.core import onnx_files
from modeltriage.core.config import EncoderSettings
from modeltriage.core.encoders import backend_of, model_digest, packaged_model_dir
from modeltriage.core.onnx_export import STATIC_NAME
from modeltriage.core.static_encoder import StaticEncoder
from tests.conftest import ROUTER_YAML, TINY_INTENTS, write_intents

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def table_path() -> Path:
    """Where the table of the packaged weights lives, relative to the cache root."""
    return Path("onnx") / model_digest(packaged_model_dir())[:16] / STATIC_NAME


def _sealed(cache: Path, table_path: Path, content: bytes | np.ndarray) -> Path:
    final = cache / table_path
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_files.temp_path(final)
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        with tmp.open("wb") as handle:
            np.save(handle, content)
    onnx_files.seal(tmp, final)  # the checksum matches: only reading it can tell
    return final


def test_the_setting_names_the_backend() -> None:
    assert EncoderSettings(backend="static").backend == "static"
    assert backend_of("sentence-transformers/all-MiniLM-L6-v2 [static 0123456789ab]") == (
        "sentence-transformers/all-MiniLM-L6-v2",
        "static",
    )


def test_a_missing_table_is_an_error_naming_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, table_path: Path
) -> None:
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        StaticEncoder()
    message = str(info.value)
    assert "is missing" in message and "modeltriage build" in message and "\n" not in message
    assert str(tmp_path / table_path) in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x93NUMPY garbage, not an array" * 20, "cannot be read"),
        (np.zeros((4, 384), dtype=np.float32), "not (tokens, dim) float16"),
        (np.zeros(384, dtype=np.float16), "not (tokens, dim) float16"),
        (np.zeros((10, 384), dtype=np.float16), "10 rows for a vocabulary of 30522"),
    ],
)
def test_a_damaged_or_foreign_table_is_an_error_never_a_fallback(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    table_path: Path,
    content: bytes | np.ndarray,
    expected: str,
) -> None:
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path))
    final = _sealed(tmp_path, table_path, content)
    with pytest.raises(ConfigError) as info:
        StaticEncoder()
    message = str(info.value)
    assert expected in message and str(final) in message
    assert "modeltriage build" in message and "\n" not in message


def test_a_truncated_table_is_caught_by_its_checksum(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, table_path: Path
) -> None:
    monkeypatch.setenv("MODELTRIAGE_CACHE_DIR", str(tmp_path))
    final = _sealed(tmp_path, table_path, np.zeros((30522, 384), dtype=np.float16))
    with final.open("r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(ConfigError, match="corrupt or truncated"):
        StaticEncoder()


# --- the real distillation (torch export, then onnxruntime; once per module) ---------


@pytest.fixture(scope="module")
def static_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("static-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELTRIAGE_CACHE_DIR", str(cache))
        StaticEncoder(export=True)
        yield cache


@pytest.mark.real
def test_the_table_is_sealed_float16_one_row_per_token_and_reused(
    static_cache: Path, table_path: Path
) -> None:
    final = static_cache / table_path
    assert onnx_files.problem(final) is None
    table = np.load(final, mmap_mode="r")
    assert table.dtype == np.float16 and table.shape == (30522, 384)
    assert not np.any(table[0])  # [PAD], id 0: weight log(1) = 0
    before = final.stat().st_mtime_ns
    encoder = StaticEncoder(export=True)
    assert final.stat().st_mtime_ns == before
    assert encoder.path == final and encoder.dim == 384
    assert backend_of(encoder.model_id)[1] == "static"


@pytest.mark.real
def test_vectors_are_unit_length_deterministic_and_order_free(static_cache: Path) -> None:
    encoder = StaticEncoder()
    texts = ["cancel my subscription", "", "what is 17 * 23", "refund " * 400, "注文"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms[[0, 2, 3, 4]], 1.0, atol=1e-5) and norms[1] == 0.0
    assert np.array_equal(encoder.encode(texts[::-1])[::-1], vectors)
    assert np.array_equal(encoder.encode([texts[0]])[0], vectors[0])
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.real
def test_paraphrases_are_nearer_than_other_requests(static_cache: Path) -> None:
    encoder = StaticEncoder()
    a, b, other = encoder.encode(
        ["cancel my subscription", "I want to stop my plan", "what is the weather in Paris"]
    )
    assert float(a @ b) > float(a @ other) + 0.1


def _static_intents(tmp_path: Path) -> Path:
    return write_intents(
        tmp_path / "intents", TINY_INTENTS, ROUTER_YAML + "encoder: {backend: static}\n"
    )


@pytest.mark.real
def test_an_index_names_the_static_backend_and_refuses_another(
    static_cache: Path, tmp_path: Path
) -> None:
    intents = _static_intents(tmp_path)
    manifest = build_index(intents)
    assert "[static " in manifest.encoder
    assert Router.load(intents, log=False).route("when do you open").intent == "hours"
    with pytest.raises(StaleIndexError, match="static"):
        Router.load(intents, encoder=OnnxEncoder("onnx"), log=False)


@pytest.mark.real
def test_serving_a_static_index_imports_no_torch_and_no_onnxruntime(
    static_cache: Path, tmp_path: Path
) -> None:
    intents = _static_intents(tmp_path)
    build_index(intents)
    code = textwrap.dedent(
        f"""
        import sys
        from modeltriage import Router
        router = Router.load({str(intents)!r}, log=False)
        assert router.route("when do you open").intent == "hours"
        heavy = {{"torch", "transformers", "sentence_transformers", "onnxruntime"}}
        print(sorted(heavy & set(sys.modules)))
        """
    )
    env = {"MODELTRIAGE_CACHE_DIR": str(static_cache), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
