"""Exporting a sentence-transformers model to ONNX (fp32, then int8): the only step of
the ONNX backends that needs torch, run once per set of weights at build time."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from modeltriage.core import onnx_files
from modeltriage.errors import MissingDependencyError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"
FP32_NAME = "model.onnx"
INT8_NAME = "model-int8.onnx"


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


def quantise_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation, per channel: weights int8, activations quantised on the fly."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx") from None
    tmp = onnx_files.temp_path(target)
    root = logging.getLogger()
    level = root.level
    try:
        # onnxruntime logs a pre-processing suggestion on the root logger every time.
        root.setLevel(logging.ERROR)
        quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, per_channel=True)
        onnx_files.seal(tmp, target)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)


def ensure_export(model_dir: Path, folder: Path, int8: bool) -> Path:
    """The exported file in ``folder`` for ``model_dir``, exporting what is missing or
    damaged. Returns the file the encoder runs."""
    fp32 = folder / FP32_NAME
    if onnx_files.problem(fp32) is not None:
        export_fp32(model_dir, fp32)
    if not int8:
        return fp32
    quantised = folder / INT8_NAME
    if onnx_files.problem(quantised) is not None:
        quantise_int8(fp32, quantised)
    return quantised
