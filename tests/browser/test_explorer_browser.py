"""The router explorer (/ui) in a real browser: Debian's chromium driven by Playwright,
against a real `modeltriage serve` (real encoder, real index) on a loopback port."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import REPO, SHIPPED_INTENTS

CHROMIUM = Path(os.environ.get("MODELTRIAGE_CHROMIUM", "/usr/bin/chromium"))
ADMIN_KEY = "explorer-test-key"
SAMPLE = REPO / "examples" / "traffic" / "support_day.jsonl"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.real,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "modeltriage.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture(scope="module")
def intents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("explorer") / "intents"
    shutil.copytree(SHIPPED_INTENTS, target, ignore=shutil.ignore_patterns(".log*"))
    return target


@pytest.fixture(scope="module")
def server(intents: Path) -> Iterator[str]:
    """`modeltriage serve` once for the module, run from the repository so the default
    sample (examples/traffic/) is found."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "HF_HUB_OFFLINE": "1",
        "MODELTRIAGE_ADMIN_KEYS": ADMIN_KEY,
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "modeltriage.cli", "serve"),
            *("--intents", str(intents), "--host", "127.0.0.1", "--port", str(port)),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"serve exited: {process.stderr.read() if process.stderr else ''}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("serve did not start in 300 s")
                time.sleep(0.5)
        for text in ("what are your hours?", "I was charged twice for my order"):
            request = urllib.request.Request(
                f"{url}/route",
                data=json.dumps({"text": text}).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                decision_id = json.load(answer)["id"]
        feedback = urllib.request.Request(
            f"{url}/feedback",
            data=json.dumps(
                {"decision_id": decision_id, "quality": 0.8, "source": "judge"}
            ).encode(),
            headers={"content-type": "application/json"},
        )
        urllib.request.urlopen(feedback, timeout=30).close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: object, server: str) -> Iterator[object]:
    """A page on /ui that fails the test on any console error or page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(f"{server}/ui")
    tab.wait_for_selector("body[data-ready=true]", timeout=60_000)
    yield tab
    context.close()
    assert errors == [], f"console errors: {errors}"


def _figure(page: object, label: str) -> float:
    value = page.get_attribute(f'[data-figure="{label}"]', "data-value")  # type: ignore[attr-defined]
    assert value is not None
    return float(value)


def _wait_sweep(page: object, label: str, old: float | None) -> float:
    page.wait_for_function(  # type: ignore[attr-defined]
        """([label, old]) => { const n = document.querySelector(`[data-figure="${label}"]`);
           return n && n.dataset.value !== "" && (old === null || Number(n.dataset.value) !== old); }""",
        arg=[label, old],
        timeout=120_000,
    )
    return _figure(page, label)


def test_each_tab_opens_and_labels_every_input(page: object) -> None:
    for name in ("Route", "Thresholds", "Compare", "Log"):
        page.get_by_role("tab", name=name).click()  # type: ignore[attr-defined]
        panel = page.locator(f"#panel-{name.lower()}")  # type: ignore[attr-defined]
        assert panel.is_visible()
    unlabelled = page.evaluate(  # type: ignore[attr-defined]
        """() => [...document.querySelectorAll('input, select, textarea')]
             .filter((i) => !(i.labels && i.labels.length) && !i.getAttribute('aria-label'))
             .map((i) => i.id)"""
    )
    assert unlabelled == []


def test_route_a_request_and_read_the_card(page: object) -> None:
    page.get_by_label("Request", exact=True).fill("I was charged twice for my order")  # type: ignore[attr-defined]
    page.wait_for_selector("#decision-card:not([hidden]) [data-testid=model]", timeout=60_000)  # type: ignore[attr-defined]
    card = page.locator("#decision-card")  # type: ignore[attr-defined]
    assert card.locator('[data-field="intent"]').inner_text() == "billing_dispute"
    for field in ("runner-up", "difficulty", "tier", "reason", "cascade plan", "estimated cost"):
        assert card.locator(f'[data-field="{field}"]').inner_text().strip()
    assert page.locator("#neighbours tbody tr").count() > 0  # type: ignore[attr-defined]
    assert page.locator("#decision-gauges svg").count() == 2  # type: ignore[attr-defined]


def test_keyboard_moves_tabs_and_sliders_and_numbers_agree_with_tune(
    page: object, intents: Path
) -> None:
    page.get_by_role("tab", name="Route").focus()  # type: ignore[attr-defined]
    page.keyboard.press("ArrowRight")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.id") == "tab-thresholds"  # type: ignore[attr-defined]
    before = _wait_sweep(page, "cascade rate", None)
    assert page.locator("[data-testid=current-point]").count() == 1  # type: ignore[attr-defined]
    page.get_by_role("slider", name=re.compile(r"^margin")).focus()  # type: ignore[attr-defined]
    for _ in range(10):  # 0.2 -> 0.3, one step of 0.01 a key
        page.keyboard.press("ArrowRight")  # type: ignore[attr-defined]
    assert page.input_value("#th-margin") == "0.3"  # type: ignore[attr-defined]
    # Each key press may sweep (debounced): wait for the figures of the last setting.
    page.wait_for_selector('#th-figures[data-margin="0.3"]', timeout=120_000)  # type: ignore[attr-defined]
    cascade = _figure(page, "cascade rate")
    assert cascade > before
    after = _figure(page, "savings")
    quality = _figure(page, "quality")
    tuned = json.loads(
        _cli(
            "tune",
            "--intents",
            str(intents),
            "--labelled",
            str(SAMPLE),
            "--held-out",
            "0",
            "--json",
            cwd=REPO,
        ).stdout
    )
    point = next(p for p in tuned["points"] if p["margin"] == 0.3 and p["min_similarity"] == 0.45)
    assert after == pytest.approx(point["savings"], abs=1e-9)
    assert quality == pytest.approx(point["quality"], abs=1e-9)
    assert cascade == pytest.approx(point["cascade_rate"], abs=1e-9)


def test_apply_without_then_with_the_admin_key(page: object, intents: Path, server: str) -> None:
    config = intents / "router.yaml"
    original = config.read_text()
    page.get_by_role("tab", name="Thresholds").click()  # type: ignore[attr-defined]
    _wait_sweep(page, "savings", None)
    page.get_by_role("button", name="Apply to router.yaml").click()  # type: ignore[attr-defined]
    page.wait_for_selector("#apply-yaml:not([hidden])")  # type: ignore[attr-defined]
    assert "Not applied" in page.inner_text("#apply-status")  # type: ignore[attr-defined]
    assert "margin: 0.2" in page.inner_text("#apply-yaml")  # type: ignore[attr-defined]
    assert config.read_text() == original
    refused = urllib.request.Request(
        f"{server}/explore/apply",
        data=json.dumps({"thresholds": {"margin": 0.3}}).encode(),
        headers={"content-type": "application/json", "authorization": "Bearer wrong"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(refused, timeout=30)
    assert raised.value.code == 401
    assert config.read_text() == original
    page.get_by_role("slider", name=re.compile(r"^min_similarity")).focus()  # type: ignore[attr-defined]
    page.keyboard.press("ArrowLeft")  # type: ignore[attr-defined]  # 0.45 -> 0.44
    page.get_by_label("Admin key").fill(ADMIN_KEY)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Apply to router.yaml").click()  # type: ignore[attr-defined]
    page.wait_for_function(
        "document.querySelector('#apply-status').textContent.startsWith('Written')"
    )  # type: ignore[attr-defined]
    assert "min_similarity: 0.44" in config.read_text()
    backups = list(intents.glob("router.yaml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == original
    config.write_text(original)
    backups[0].unlink()


def test_compare_tab_shows_three_strategies(page: object) -> None:
    page.get_by_role("tab", name="Compare").click()  # type: ignore[attr-defined]
    page.wait_for_selector("#cmp-table tr[data-strategy=routed]", timeout=60_000)  # type: ignore[attr-defined]
    names = page.eval_on_selector_all(
        "#cmp-table tr[data-strategy]", "rs => rs.map(r => r.dataset.strategy)"
    )  # type: ignore[attr-defined]
    assert names == ["routed", "always-flagship", "always-cheapest"]
    cost = page.get_attribute("tr[data-strategy=routed] td[data-value]", "data-value")  # type: ignore[attr-defined]
    page.get_by_role("slider", name=re.compile(r"^escalation rate")).focus()  # type: ignore[attr-defined]
    page.keyboard.press("Home")  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "c => document.querySelector('tr[data-strategy=routed] td[data-value]').dataset.value !== c",
        arg=cost,
    )


def test_log_tab_opens_a_logged_decision(page: object) -> None:
    page.get_by_role("tab", name="Log").click()  # type: ignore[attr-defined]
    page.wait_for_selector("#log-list tbody tr", timeout=30_000)  # type: ignore[attr-defined]
    page.select_option("#log-intent", "billing_dispute")  # type: ignore[attr-defined]
    page.wait_for_function("document.querySelectorAll('#log-list tbody tr').length === 1")  # type: ignore[attr-defined]
    page.locator("#log-list tbody tr button").first.press("Enter")  # type: ignore[attr-defined]
    page.wait_for_selector("#log-detail:not([hidden])")  # type: ignore[attr-defined]
    assert page.inner_text('#log-detail [data-field="intent"]') == "billing_dispute"  # type: ignore[attr-defined]
    assert "0.8 from judge" in page.inner_text("#log-detail")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_screenshots(browser: object, server: str, width: int, height: int, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.goto(f"{server}/ui")
    tab.wait_for_selector("body[data-ready=true]")
    tab.get_by_role("tab", name="Thresholds").click()
    tab.wait_for_selector("[data-testid=current-point]", timeout=60_000)
    out = Path(os.environ.get("MODELTRIAGE_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(out / f"explorer-thresholds-{width}x{height}.png"))
    tab.get_by_role("tab", name="Route").click()
    tab.get_by_label("Request", exact=True).fill(
        "my router keeps dropping the connection after the firmware update"
    )
    tab.wait_for_selector("#decision-card:not([hidden])", timeout=60_000)
    tab.screenshot(path=str(out / f"explorer-route-{width}x{height}.png"))
    context.close()
