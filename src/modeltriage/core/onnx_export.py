"""Exporting a sentence-transformers model to ONNX (fp32, then int8, see
``onnx_quantise``, or the ``static`` backend's token table, see ``static_table``): the
only step of the ONNX and static backends that needs torch, run once per set of weights
at build time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Literal, cast, get_args

from modeltriage.core import onnx_files
from modeltriage.core.cpu import available_cores
from modeltriage.core.onnx_quantise import quantise_int8
from modeltriage.core.onnx_tokenizer import INPUTS
from modeltriage.errors import ConfigError, MissingDependencyError, ModelTriageError

OUTPUT = "last_hidden_state"
FP32_NAME = "model.onnx"
# The name changes with the quantisation recipe, so a cache never serves an older one.
INT8_NAME = "model-int8-smoothed-tables.onnx"
STATIC_NAME = "static-logid-mean.npy"
# What an export produces: the fp32 model, its int8 copy, or the static token table.
ExportKind = Literal["fp32", "int8", "static"]


def export_fp32(model_dir: Path, target: Path) -> None:
    """The transformer of ``model_dir`` as ONNX, batch and sequence axes dynamic. Pooling
    and normalisation stay outside, in numpy, as sentence-transformers does them."""
    try:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise MissingDependencyError("torch", "encoder") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # Eager attention traces to plain ops, valid for every sequence length.
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    bert.eval()

    class Hidden(torch.nn.Module):
        # BertModel.forward's positional order changes across transformers versions.
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            out = self.inner(input_ids=ids, attention_mask=mask, token_type_ids=types)
            return out.last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    tmp = onnx_files.temp_path(target)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, OUTPUT)}
    try:
        # The legacy exporter traces BERT without extra dependencies; its warnings
        # about tracing are expected and only noise for a user.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Hidden(bert),
                (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                str(tmp),
                input_names=list(INPUTS),
                output_names=[OUTPUT],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        onnx_files.seal(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_export(model_dir: Path, folder: Path, kind: ExportKind) -> Path:
    """The exported file of ``kind`` in ``folder`` for ``model_dir``, exporting what is
    missing or damaged. Returns the file the encoder runs."""
    fp32 = folder / FP32_NAME
    if onnx_files.problem(fp32) is not None:
        export_fp32(model_dir, fp32)
    if kind == "fp32":
        return fp32
    if kind == "static":
        from modeltriage.core.static_table import distil_table

        table = folder / STATIC_NAME
        if onnx_files.problem(table) is not None:
            distil_table(fp32, model_dir, table, threads=available_cores())
        return table
    quantised = folder / INT8_NAME
    if onnx_files.problem(quantised) is not None:
        quantise_int8(fp32, quantised, model_dir)
    return quantised


def export_in_child(model_dir: Path, folder: Path, kind: ExportKind) -> Path:
    """:func:`ensure_export` in a child process: exporting loads torch, and a process that
    goes on to serve (``modeltriage serve`` building its index) must not keep torch and
    its threads in memory. Errors come back as the ones :func:`ensure_export` raises."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", __name__, str(model_dir), str(folder), kind]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode == 0:
        return Path(done.stdout.strip().splitlines()[-1])
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ConfigError(f"exporting the ONNX encoder failed: {tail[0][:300]}", folder) from None
    if "missing" in answer:
        raise MissingDependencyError(*answer["missing"])
    raise ConfigError(f"exporting the ONNX encoder failed: {answer['error']}", folder)


def _child(argv: list[str]) -> int:
    model_dir, folder, kind = Path(argv[0]), Path(argv[1]), argv[2]
    if kind not in get_args(ExportKind):
        print(json.dumps({"error": f"unknown export kind {kind!r}"}))
        return 4
    try:
        print(ensure_export(model_dir, folder, cast(ExportKind, kind)))
    except MissingDependencyError as exc:
        print(json.dumps({"missing": [exc.package, exc.extra]}))
        return 3
    except ModelTriageError as exc:
        print(json.dumps({"error": str(exc)}))
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
