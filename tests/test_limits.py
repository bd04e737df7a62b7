"""router.yaml's request bounds (`limits:`): metadata keys, key length and value bytes,
the choices of an answer check, and name lengths. Defaults are the fixed bounds they
replace; each is checked in one place (core.inputs) for the library and the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, InputError, RouteOptions, Router, load_intents
from modeltriage.core.config import Limits
from modeltriage.core.options import (
    CHOICES_CEILING,
    METADATA_KEYS_CEILING,
    NAME_CHARS_CEILING,
)
from modeltriage.errors import ConfigError
from modeltriage.followup.answers import Answer

from .conftest import ROUTER_YAML, TINY_INTENTS, Serve, write_intents

ASK = "when do you open on sunday"
TIGHT = (
    "limits: {max_metadata_keys: 2, max_metadata_key_chars: 5, max_metadata_value_bytes: 8,"
    " max_choices: 3, max_name_chars: 10}\n"
)
WIDE = "limits: {max_metadata_keys: 100, max_metadata_value_bytes: 4096, max_choices: 60}\n"


def _router(tmp_path: Path, extra: str) -> Router:
    directory = write_intents(tmp_path / "i", TINY_INTENTS, ROUTER_YAML + extra)
    return Router.in_memory(load_intents(directory), HashingEncoder(), exact_numpy=True)


def test_the_defaults_are_the_former_fixed_bounds() -> None:
    limits = Limits()
    assert (limits.max_metadata_keys, limits.max_metadata_key_chars) == (32, 64)
    assert (limits.max_metadata_value_bytes, limits.max_choices, limits.max_name_chars) == (
        256,
        26,
        200,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"max_metadata_keys": METADATA_KEYS_CEILING + 1},
        {"max_choices": CHOICES_CEILING + 1},
        {"max_choices": 0},
        {"max_name_chars": NAME_CHARS_CEILING + 1},
        {"max_metadata_value_bytes": "many"},
        {"max_metadata_keys_typo": 3},
    ],
)
def test_a_limit_beyond_its_ceiling_or_of_the_wrong_type_is_refused(
    tmp_path: Path, bad: dict[str, Any]
) -> None:
    key, value = next(iter(bad.items()))
    directory = write_intents(
        tmp_path / "i", TINY_INTENTS, ROUTER_YAML + f"limits: {{{key}: {value}}}\n"
    )
    with pytest.raises(ConfigError, match=r"router\.yaml:\d+"):
        load_intents(directory)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"metadata": {"a": 1, "b": 2, "c": 3}}, "limits.max_metadata_keys"),
        ({"metadata": {"longkey": 1}}, "limits.max_metadata_key_chars"),
        ({"metadata": {"t": "é" * 5}}, "limits.max_metadata_value_bytes"),
        ({"conversation_id": "c" * 11}, "limits.max_name_chars"),
        ({"step": "s" * 11}, "limits.max_name_chars"),
    ],
)
def test_the_library_refuses_options_over_the_configured_limits(
    tmp_path: Path, options: dict[str, Any], says: str
) -> None:
    with _router(tmp_path, TIGHT) as router:
        with pytest.raises(InputError, match=says):
            router.route(ASK, RouteOptions(**options))
        (refused,) = router.route_many([(ASK, RouteOptions(**options))])
        assert isinstance(refused, InputError) and says in str(refused)
        # At the limit passes.
        router.route(ASK, RouteOptions(metadata={"a": "é" * 4, "bb": 1}, conversation_id="c" * 10))


def test_the_library_refuses_choices_and_names_over_the_limits(tmp_path: Path) -> None:
    with _router(tmp_path, TIGHT) as router:
        with pytest.raises(InputError, match=r"limits\.max_choices"):
            router.escalate(Answer(answer="A", choices=["A", "B", "C", "D"]), model="small-a")
        assert router.escalate(Answer(answer="A", choices=["A", "B", "C"]), model="small-a")
        with pytest.raises(InputError, match=r"limits\.max_name_chars"):
            router.escalate("fine", model="m" * 11)


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/route", {"text": ASK, "metadata": {"a": 1, "b": 2, "c": 3}}, ["body", "metadata"]),
        ("/route", {"text": ASK, "metadata": {"t": "x" * 9}}, ["body", "metadata", "t"]),
        ("/route/batch", {"texts": [ASK], "metadata": {"longkey": 1}}, ["body", "metadata"]),
        ("/route", {"text": ASK, "conversation_id": "c" * 11}, ["body", "conversation_id"]),
        (
            "/escalate",
            {"answer": "A", "model": "small-a", "choices": list("ABCD")},
            ["body", "choices"],
        ),
        ("/feedback", {"decision_id": "d", "quality": 1, "model": "m" * 11}, ["body", "model"]),
    ],
)
def test_the_service_answers_422_pointing_at_the_field(
    tmp_path: Path, serve: Serve, path: str, body: dict[str, Any], loc: list[str]
) -> None:
    with _router(tmp_path, TIGHT) as router:
        client: TestClient = serve(router)
        r = client.post(path, json=body)
        assert r.status_code == 422, r.text
        (problem,) = r.json()["detail"]
        assert problem["loc"] == loc and problem["type"] == "limit", problem
        assert "limits.max_" in problem["msg"]


def test_wider_limits_let_more_through(tmp_path: Path, serve: Serve) -> None:
    with _router(tmp_path, WIDE) as router:
        client = serve(router)
        metadata = {f"k{i}": "é" * 2000 for i in range(100)}
        assert client.post("/route", json={"text": ASK, "metadata": metadata}).status_code == 200
        choices = [f"c{i}" for i in range(60)]
        r = client.post("/escalate", json={"answer": "c7", "model": "small-a", "choices": choices})
        assert r.status_code == 200, r.text
        # The ceiling still holds whatever router.yaml says.
        r = client.post(
            "/escalate",
            json={"answer": "A", "model": "small-a", "choices": ["A"] * (CHOICES_CEILING + 1)},
        )
        assert r.status_code == 422


@pytest.mark.real
def test_the_default_limits_hold_through_the_real_encoder(shipped_router: Router) -> None:
    """The shipped router.yaml sets no limits: the defaults apply, before any encoding."""
    too_many = {f"k{i}": i for i in range(33)}
    with pytest.raises(InputError, match=r"limits\.max_metadata_keys"):
        shipped_router.route("where is my parcel?", RouteOptions(metadata=too_many), log=False)
    decision = shipped_router.route(
        "where is my parcel?", RouteOptions(metadata={f"k{i}": i for i in range(32)}), log=False
    )
    assert decision.model
    with pytest.raises(InputError, match=r"limits\.max_choices"):
        shipped_router.escalate(
            Answer(answer="A", choices=[f"c{i}" for i in range(27)]), model=decision.model
        )
