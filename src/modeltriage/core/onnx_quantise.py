"""int8 quantisation of the exported encoder, made to keep its vectors: cosine to the
fp32 model >= 0.99 on every text of ``tests/test_encoders.py``, where onnxruntime's own
dynamic quantisation falls to 0.96 on one-word texts (docs/benchmarks.md).

Two changes to every weight MatMul make the difference, both at export time:

- Smoothing (SmoothQuant, Xiao et al., 2023). A few channels of BERT's activations are
  hundreds of times larger than the rest, and one range per tensor spends the 8 bits on
  them. Dividing each channel of the MatMul's input by ``s`` (a ``Mul`` node) and
  multiplying the weight's rows by ``s`` moves that range into the weights, which are
  quantised per output channel; ``s = amax**ALPHA / wmax**(1 - ALPHA)``, with ``amax``
  measured on the packaged calibration texts (``calibration.txt``).
- Per-token activation ranges. Each token's row gets its own scale and zero point, so
  [CLS] and [SEP], whose rows are the largest, do not coarsen the one or two words of a
  short text. Both sides are uint8 (weights around 128): onnxruntime's u8u8 kernel is
  exact on AVX2, where the u8s8 one can saturate.

The vocabulary's embedding table is most of the model's bytes (30,522 rows by 384 in
MiniLM: 47 MB of a 59 MB file, and as much of a serving worker's memory). It is stored as
int8 with one scale per row and widened after the lookup, so only the rows a text uses
are ever float: that takes 35 MB off every worker, at no measurable cost in speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from modeltriage.core import onnx_files
from modeltriage.core.onnx_tokenizer import ENCODE_BATCH, embed, load_tokenizer, model_inputs
from modeltriage.errors import ConfigError, MissingDependencyError

# Chosen on the packaged MiniLM by the smallest cosine to fp32 over the fidelity texts of
# tests/test_encoders.py and 310 CLINC150 val texts: 0.3 -> 0.982, 0.4 -> 0.993,
# 0.5 -> 0.9945, 0.6 -> 0.993, 0.7 -> 0.993 (docs/benchmarks.md).
ALPHA = 0.5
# A model whose int8 copy strays further than this from fp32 on the calibration texts is
# refused rather than served: its index would not be the fp32 model's index.
FIDELITY_FLOOR = 0.99


@dataclass(frozen=True)
class _MatMul:
    """A MatMul of the graph whose second input is a weight matrix."""

    position: int
    node: Any
    weight: np.ndarray


def calibration_texts() -> list[str]:
    """The packaged calibration texts, one a line; ``#`` lines are comments."""
    text = resources.files("modeltriage.core").joinpath("calibration.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def quantise_int8(source: Path, target: Path, model_dir: Path) -> None:
    """Write the smoothed, per-token int8 copy of the fp32 export ``source`` to ``target``
    (sealed with its checksum); ``model_dir`` gives the tokenizer for calibration. Raises
    ConfigError when the copy misses :data:`FIDELITY_FLOOR`."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "encoder") from None
    model = onnx.load(str(source))
    matmuls = _weight_matmuls(model)
    tokenizer = load_tokenizer(model_dir)
    texts = calibration_texts()
    maxima = _input_maxima(model, matmuls, tokenizer, texts)
    _rewrite(model, matmuls, maxima)
    quantise_tables(model)
    tmp = onnx_files.temp_path(target)
    try:
        onnx.save(model, str(tmp))
        worst = _min_cosine(source, tmp, tokenizer, texts)
        if worst < FIDELITY_FLOOR:
            raise ConfigError(
                f"int8 quantisation keeps too little of this model's vectors (minimum cosine "
                f"{worst:.3f} to fp32 on the calibration texts, below {FIDELITY_FLOOR}); "
                "use `encoder.backend: onnx`",
                source,
            )
        onnx_files.seal(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _weight_matmuls(model: Any) -> list[_MatMul]:
    from onnx import numpy_helper

    weights = {init.name: init for init in model.graph.initializer if len(init.dims) == 2}
    return [
        _MatMul(position, node, numpy_helper.to_array(weights[node.input[1]]).astype(np.float32))
        for position, node in enumerate(model.graph.node)
        if node.op_type == "MatMul" and node.input[1] in weights
    ]


def _session(model: Any) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _input_maxima(
    model: Any, matmuls: list[_MatMul], tokenizer: Any, texts: list[str]
) -> dict[str, np.ndarray]:
    """Per input channel, the largest |activation| each MatMul input takes over ``texts``
    (padding positions left out)."""
    from onnx import TensorProto, helper

    names = sorted({m.node.input[0] for m in matmuls})
    probe = type(model)()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = _session(probe)
    maxima: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), ENCODE_BATCH):
        feeds = model_inputs(tokenizer, texts[start : start + ENCODE_BATCH])
        real = feeds["attention_mask"].astype(bool)
        for name, values in zip(names, session.run(names, feeds), strict=True):
            found = np.abs(values[real]).max(axis=0)
            maxima[name] = np.maximum(maxima[name], found) if name in maxima else found
    return maxima


def _rewrite(model: Any, matmuls: list[_MatMul], maxima: dict[str, np.ndarray]) -> None:
    """Replace each weight MatMul by: smooth its input (once per input), quantise the
    input per token (once per input), integer MatMul, rescale to float."""
    from onnx import numpy_helper

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    constants = _Constants(axes_as_input=opset >= 18)
    by_input: dict[str, list[_MatMul]] = {}
    for m in matmuls:
        by_input.setdefault(m.node.input[0], []).append(m)
    # One factor per input, shared by its MatMuls (the Q, K and V projections share one).
    smoothing = {
        source: _smoothing(
            maxima[source], np.max([np.abs(m.weight).max(axis=1) for m in group], axis=0)
        )
        for source, group in by_input.items()
    }
    replaced = {m.position: m for m in matmuls}
    done: dict[str, tuple[str, str, str]] = {}
    nodes: list[Any] = []
    for position, node in enumerate(graph.node):
        matmul = replaced.get(position)
        if matmul is None:
            nodes.append(node)
            continue
        source = node.input[0]
        smooth = smoothing[source]
        if source not in done:
            done[source] = _quantise_rows(nodes, constants, source, 1.0 / smooth, len(done))
        nodes.extend(_integer_matmul(constants, matmul, smooth, done[source], position))
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used and init.name not in constants]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + [numpy_helper.from_array(v, k) for k, v in constants.items()])


def _smoothing(activation_max: np.ndarray, weight_max: np.ndarray) -> np.ndarray:
    a = np.maximum(activation_max, 1e-5) ** ALPHA
    w = np.maximum(weight_max, 1e-5) ** (1.0 - ALPHA)
    return np.asarray(a / w, dtype=np.float32)


class _Constants(dict[str, np.ndarray]):
    """Initializers the rewrite adds, by name."""

    def __init__(self, axes_as_input: bool) -> None:
        super().__init__()
        self.axes_as_input = axes_as_input  # ReduceMax took its axes as an attribute before 18
        self["mt_255"] = np.array(255.0, dtype=np.float32)
        self["mt_zero"] = np.array(0.0, dtype=np.float32)
        self["mt_eps"] = np.array(1e-8, dtype=np.float32)
        self["mt_last_axis"] = np.array([-1], dtype=np.int64)

    def add(self, name: str, value: np.ndarray) -> str:
        self[name] = value
        return name


def _quantise_rows(
    nodes: list[Any], constants: _Constants, source: str, inverse: np.ndarray, n: int
) -> tuple[str, str, str]:
    """Nodes that smooth ``source`` and quantise each of its rows to uint8 with the row's
    own range (asymmetric: a GELU output is nearly all positive); returns the names of the
    quantised tensor, the per-row scale and the per-row zero point (as float)."""
    from onnx import TensorProto, helper

    p = f"mt_in{n}"
    smoothed = constants.add(f"{p}_inverse", inverse.astype(np.float32))

    def reduce(op: str, out: str) -> Any:
        if constants.axes_as_input:
            return helper.make_node(op, [f"{p}_x", "mt_last_axis"], [out], keepdims=1)
        return helper.make_node(op, [f"{p}_x"], [out], axes=[-1], keepdims=1)

    nodes.extend(
        [
            helper.make_node("Mul", [source, smoothed], [f"{p}_x"]),
            reduce("ReduceMax", f"{p}_max"),
            reduce("ReduceMin", f"{p}_min"),
            helper.make_node("Max", [f"{p}_max", "mt_zero"], [f"{p}_hi"]),
            helper.make_node("Min", [f"{p}_min", "mt_zero"], [f"{p}_lo"]),
            helper.make_node("Sub", [f"{p}_hi", f"{p}_lo"], [f"{p}_range"]),
            helper.make_node("Div", [f"{p}_range", "mt_255"], [f"{p}_raw_scale"]),
            helper.make_node("Max", [f"{p}_raw_scale", "mt_eps"], [f"{p}_scale"]),
            helper.make_node("Div", [f"{p}_lo", f"{p}_scale"], [f"{p}_lo_steps"]),
            helper.make_node("Round", [f"{p}_lo_steps"], [f"{p}_neg_zero"]),
            helper.make_node("Neg", [f"{p}_neg_zero"], [f"{p}_zero"]),
            helper.make_node("Div", [f"{p}_x", f"{p}_scale"], [f"{p}_scaled"]),
            helper.make_node("Round", [f"{p}_scaled"], [f"{p}_rounded"]),
            helper.make_node("Add", [f"{p}_rounded", f"{p}_zero"], [f"{p}_shifted"]),
            helper.make_node("Clip", [f"{p}_shifted", "mt_zero", "mt_255"], [f"{p}_clipped"]),
            helper.make_node("Cast", [f"{p}_clipped"], [f"{p}_q"], to=TensorProto.UINT8),
        ]
    )
    return f"{p}_q", f"{p}_scale", f"{p}_zero"


def _integer_matmul(
    constants: _Constants,
    matmul: _MatMul,
    smooth: np.ndarray,
    rows: tuple[str, str, str],
    position: int,
) -> list[Any]:
    """The integer MatMul replacing ``matmul``, and its rescaling to float.

    onnxruntime's integer MatMul takes one zero point for the whole input, so the rows'
    own zero points come off afterwards: (q - z) W = q W - z * colsum(W). The weight's
    scale multiplies first: onnxruntime fuses MatMulInteger, Cast and that Mul into one
    kernel, which takes a scale per output column but not one per row."""
    from onnx import TensorProto, helper

    quantised, scale, zero = rows
    p = f"mt_mm{position}"
    weight = matmul.weight * smooth[:, None]
    column_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
    codes = np.clip(np.round(weight / column_scale), -127, 127)
    w = constants.add(f"{p}_w", (codes + 128).astype(np.uint8))
    w_zero = constants.add(f"{p}_w_zero", np.full(weight.shape[1], 128, dtype=np.uint8))
    col = constants.add(f"{p}_w_scale", column_scale.astype(np.float32))
    sums = constants.add(f"{p}_w_sums", (codes.sum(axis=0) * column_scale).astype(np.float32))
    return [
        helper.make_node("MatMulInteger", [quantised, w, "", w_zero], [f"{p}_acc"]),
        helper.make_node("Cast", [f"{p}_acc"], [f"{p}_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{p}_float", col], [f"{p}_cols"]),
        helper.make_node("Mul", [zero, sums], [f"{p}_offset"]),
        helper.make_node("Sub", [f"{p}_cols", f"{p}_offset"], [f"{p}_centred"]),
        helper.make_node(
            "Mul", [f"{p}_centred", scale], list(matmul.node.output), name=matmul.node.name
        ),
    ]


# A float table looked up by Gather is stored as int8 from this many values: the
# vocabulary (11.7M in MiniLM), not the position or token-type tables (0.2M and 768), whose
# few bytes are not worth a rounding.
TABLE_MIN_VALUES = 1_000_000


def quantise_tables(model: Any, min_values: int = TABLE_MIN_VALUES) -> None:
    """Store each large embedding table as int8 codes, symmetric with one scale per row,
    and replace its Gather by: gather the codes, widen to float, times the rows' scales
    (gathered by the same ids). Everything after the lookup is unchanged."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    tables = {
        init.name: init
        for init in graph.initializer
        if len(init.dims) == 2
        and init.data_type == TensorProto.FLOAT
        and init.dims[0] * init.dims[1] >= min_values
    }
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    nodes: list[Any] = []
    replaced: set[str] = set()
    added: list[Any] = []
    for node in graph.node:
        table = node.input[0] if node.op_type == "Gather" and node.input else ""
        # Only a table that this Gather alone reads, along rows: anything else keeps float.
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if table not in tables or users.get(table) != 1 or axis != 0:
            nodes.append(node)
            continue
        values = numpy_helper.to_array(tables[table]).astype(np.float32)
        scale = np.maximum(np.abs(values).max(axis=1, keepdims=True), 1e-12) / 127.0
        codes = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
        p = f"mt_table{len(replaced)}"
        ids, out = node.input[1], node.output[0]
        added += [
            numpy_helper.from_array(codes, f"{p}_codes"),
            numpy_helper.from_array(scale.astype(np.float32), f"{p}_scales"),
        ]
        nodes += [
            helper.make_node("Gather", [f"{p}_codes", ids], [f"{p}_rows"], axis=0),
            helper.make_node("Cast", [f"{p}_rows"], [f"{p}_float"], to=TensorProto.FLOAT),
            helper.make_node("Gather", [f"{p}_scales", ids], [f"{p}_row_scales"], axis=0),
            helper.make_node("Mul", [f"{p}_float", f"{p}_row_scales"], [out], name=node.name),
        ]
        replaced.add(table)
    kept = [init for init in graph.initializer if init.name not in replaced]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + added)


def _min_cosine(fp32: Path, int8: Path, tokenizer: Any, texts: list[str]) -> float:
    """The smallest cosine between the two models' pooled vectors over ``texts``."""
    sessions = (_session(str(fp32)), _session(str(int8)))
    worst = 1.0
    for start in range(0, len(texts), ENCODE_BATCH):
        batch = texts[start : start + ENCODE_BATCH]
        a, b = (embed(session, tokenizer, batch) for session in sessions)
        worst = min(worst, float((a * b).sum(axis=1).min()))
    return worst
