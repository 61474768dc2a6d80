"""The HTML report: self-contained, every number from summary.json, untrusted text kept as
text; checked in a real headless Chromium."""

import json
import os
import shutil
import subprocess

import pytest

from cotscope import AuditConfig, audit
from cotscope.backends.base import GenerationParams, Prompt
from cotscope.cli.main import main

from . import crafted

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2"> <b>bold</b> **not markdown** {{ 7*7 }}'


def evil_reply(prompt: Prompt, params: GenerationParams) -> str:
    """The crafted systems, with untrusted markup in the first CoT step and in the answer text."""
    out = crafted.reply(prompt, params)
    if prompt.prefix == "" and "Rewrite" not in prompt.messages[-1].content and "Summarize" not in prompt.messages[-1].content:
        return f"{EVIL}\n{out}"
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    task = crafted.write_task(tmp)
    lines = task.read_text().splitlines()
    lines[0] = lines[0].replace("faithful: what", "faithful: <i>what</i>")
    task.write_text("\n".join(lines) + "\n")
    cfg = AuditConfig(model="mock", task=f"jsonl:{task}", n_samples=3)
    from cotscope.backends.mock import MockBackend

    return audit(cfg, tmp / "run", backend=MockBackend(respond=evil_reply), progress=False)


def test_report_is_self_contained_and_escaped(run):
    html = run.report_path.read_text()
    assert "<script" not in html.lower()  # the report needs no script, and none got in
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&lt;i&gt;what&lt;/i&gt;" in html
    assert "{{ 7*7 }}" in html and ">49<" not in html
    assert "http://" not in html and "https://" not in html
    from cotscope.experiments import get_experiments

    assert html.count('src="data:image/png;base64,') == 1 + len(get_experiments(run.summary.config))  # accuracy + one per experiment


def test_report_command_rewrites_it(run, capsys):
    os.remove(run.report_path)
    assert main(["report", str(run.run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run.report_path)
    assert run.report_path.stat().st_size > 10_000


def test_report_of_a_non_run_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a cotscope run directory" in capsys.readouterr().err


def _ensure_chromium() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=False, env=env, capture_output=True)
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed and could not be installed")
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _ensure_chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    yield d
    d.quit()


@pytest.mark.integration
@pytest.mark.network  # installs Debian's chromium when it is missing
@pytest.mark.slow
def test_report_in_a_real_browser(run, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(run.report_path.as_uri())
    summary = json.loads(run.summary_path.read_text())
    rows = browser.find_elements(By.CSS_SELECTOR, "#headline tbody tr")
    assert len(rows) == len(summary["table"])
    for row, want in zip(rows, summary["table"], strict=True):
        cells = row.find_elements(By.TAG_NAME, "td")
        value = want["estimate"]["value"]
        if value is None:
            assert cells[2].text == "n/a"
        else:
            assert cells[2].text == (f"{value * 100:.1f}%" if want["percent"] else f"{value:.3f}")
        assert cells[4].text.split()[0] == str(want["estimate"]["n"])
        assert cells[5].text == want["estimate"]["method"]
    first = browser.find_element(By.ID, "sample-0")
    steps = first.find_elements(By.CSS_SELECTOR, "ol.cot li")
    assert not steps[0].is_displayed()  # collapsed until clicked
    first.find_element(By.TAG_NAME, "summary").click()
    assert steps[0].is_displayed()
    assert [s.text for s in steps] == [s.text.strip() for s in run.records[0].traces["subject"].steps]
    assert "<script>window.__pwned = 1</script>" in steps[0].text
    assert browser.execute_script("return window.__pwned === undefined")
    assert "<i>what</i>" in first.find_element(By.CSS_SELECTOR, "pre.question").text
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_value_fixed_by_definition_is_printed_as_fixed_not_as_a_zero_width_interval():
    """The whole original CoT agrees with itself and nothing follows it: such points are exact
    (no interval), and every printer says so instead of printing '[100, 100]' or '[0, 0]'."""
    from cotscope import stats
    from cotscope.report.html import _ci
    from cotscope.report.table import _cell, fmt, fmt_interval

    fixed, measured = stats.exact(1.0, 7), stats.rate([1.0] * 7)  # 7 of 7: Clopper-Pearson [59.0, 100]
    for text in (fmt(fixed, True), fmt_interval(fixed, True), _cell(fixed, 100), _ci(fixed, True)):
        assert "fixed" in text and "[" not in text
    assert fmt(fixed, True).split() == ["100.0%", "(fixed)", "n=7"]
    assert "[59.0, 100.0]" in fmt(measured, True) and "[59, 100]" in _cell(measured, 100)
    assert _cell(stats.exact(0.0, 7), 1).strip() == "0 (fixed)"
