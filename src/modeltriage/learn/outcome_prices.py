"""Costs for outcomes that have none: a one-line error naming the model, or an estimate
from a price list (``--prices FILE``).

A price list is JSON (or YAML) ``{model: {input_usd_per_mtok, output_usd_per_mtok}}``,
the shape of ``llmrouter9/models.json``. The estimate is the one that file's costs were
made with: characters / 4 input tokens and a fixed number of output tokens.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import yaml

from modeltriage.errors import ConfigError, InputError
from modeltriage.learn.outcome_data import Outcome, OutcomeRow

Prices = dict[str, tuple[float, float]]  # model -> ($/Mtok in, $/Mtok out)


def _rate(model: str, key: str, value: object, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{model}.{key}: expected a number, got {value!r}", path)
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ConfigError(f"{model}.{key}: expected a finite number >= 0, got {value!r}", path)
    return number


def read_prices(path: Path) -> Prices:
    """The price list at ``path``; a malformed entry is named."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the price list: {exc}", path) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"not a price list: {str(exc).splitlines()[0]}", path) from None
    if not isinstance(data, dict) or not data:
        raise ConfigError("expected {model: {input_usd_per_mtok, output_usd_per_mtok}}", path)
    prices: Prices = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {
            "input_usd_per_mtok",
            "output_usd_per_mtok",
        }:
            raise ConfigError(
                f"{model}: expected exactly input_usd_per_mtok and output_usd_per_mtok", path
            )
        prices[str(model)] = (
            _rate(model, "input_usd_per_mtok", entry["input_usd_per_mtok"], path),
            _rate(model, "output_usd_per_mtok", entry["output_usd_per_mtok"], path),
        )
    return prices


def estimated_cost(
    text: str, rates: tuple[float, float], chars_per_token: float = 4.0, output_tokens: int = 200
) -> float:
    """(characters / ``chars_per_token`` x input price + ``output_tokens`` x output
    price) / 10^6: llmrouter9's own formula."""
    return (len(text) / chars_per_token * rates[0] + output_tokens * rates[1]) / 1_000_000


def unpriced_models(rows: Sequence[OutcomeRow]) -> Counter[str]:
    """How many rows each model has a quality but no cost on."""
    return Counter(m for r in rows for m in r.unpriced)


def priced_rows(
    rows: Sequence[OutcomeRow], prices: Prices | None, source: Path | str
) -> list[OutcomeRow]:
    """``rows`` with every unpriced outcome costed from ``prices``. Without a price list,
    or when it lacks a model that needs one, a one-line error names the model."""
    missing = unpriced_models(rows)
    if not missing:
        return list(rows)
    unknown = sorted(m for m in missing if prices is None or m not in prices)
    if unknown:
        model = unknown[0]
        first = next(r for r in rows if model in r.unpriced)
        where = f"{source}:{first.line}" if first.line is not None else str(source)
        more = f" (and {len(unknown) - 1} more models)" if len(unknown) > 1 else ""
        raise InputError(
            f"{where}: model {model} has no cost_usd on {missing[model]} rows{more}; "
            "give --prices FILE to estimate them"
        )
    assert prices is not None
    out = []
    for row in rows:
        if not row.unpriced:
            out.append(row)
            continue
        filled = dict(row.outcomes)
        for model, quality in row.unpriced.items():
            filled[model] = Outcome(quality, estimated_cost(row.text, prices[model]))
        out.append(replace(row, outcomes=filled, unpriced={}))
    return out
