"""`dvc plots show` works offline and every chart draws: its page carries Vega inline
(.dvc/plots/page.html, written by scripts/plots_template.py), and a real browser (headless
Chromium) opens what it writes."""

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / ".dvc/plots/page.html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_dvc_config_points_at_the_offline_page():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc/config")
    assert config["plots"]["html_template"] == "plots/page.html"  # relative to .dvc/
    page = PAGE.read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # no `{scripts}`: DVC's CDN tags stay out
    assert not re.search(r"<script[^>]+src=", page), "the page must not load scripts from anywhere"
    for name, version in (("vega", "5.20.2"), ("vega-lite", "5.2.0"), ("vega-embed", "6.18.2")):
        assert f"<!-- {name}@{version} " in page
        assert "Redistribution and use" in (ROOT / f".dvc/plots/licenses/{name}.LICENSE").read_text()


def test_the_confusion_template_puts_truth_on_rows_and_prints_counts():
    stage = __import__("yaml").safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]
    [entry] = [p for p in stage["plots"] if "dvclive/evaluate/plots/sklearn/confusion_matrix.json" in p]
    props = entry["dvclive/evaluate/plots/sklearn/confusion_matrix.json"]
    assert (props["template"], props["x"], props["y"]) == ("confusion_counts", "predicted", "actual")
    template = json.loads((ROOT / ".dvc/plots/confusion_counts.json").read_text())
    marks = [
        layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
        for layer in template["spec"]["layer"]
    ]
    assert "text" in marks  # counts always printed (DVC's own template hides them behind a checkbox)


def render(html: Path, out: Path) -> str:
    """The DOM of ``html`` after Chromium ran its scripts (and a screenshot beside ``out``)."""
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=20000",
    ]
    subprocess.run(
        [*common, "--window-size=1400,5000", f"--screenshot={out / 'plots.png'}", html.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run([*common, "--dump-dom", html.as_uri()], capture_output=True, timeout=120, check=True)
    return dom.stdout.decode("utf-8", errors="replace")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to render the plots (Debian: apt-get install -y chromium)")
def test_every_plot_draws_offline_in_a_browser(tiny_repo, tmp_path):
    run(["dvc", "repro"], tiny_repo)
    out = tmp_path / "plots"
    run(["dvc", "plots", "show", "-o", str(out)], tiny_repo)
    html = out / "index.html"
    page = html.read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and not re.search(r"<script[^>]+src=", page)
    body = page.split("<body>", 1)[1]  # the plots (the head's inline libraries hold `<img` strings too)
    vega = body.count("vegaEmbed(")
    images = re.findall(r'<img src="([^"]+)"', body)
    declared = json.loads(run(["dvc", "plots", "show", "--json"], tiny_repo).stdout)["data"]
    assert vega + len(images) == len(declared) >= 10, sorted(declared)
    titles = re.findall(r'"title": \{"text": "([^"]*)"', body) + re.findall(r'"title": "([^"]+)"', body)
    assert sum("per epoch" in t for t in set(titles)) == 2  # loss and accuracy, once each
    dom = render(html, tmp_path)
    errors = re.search(r'<div id="plot-errors">(.*?)</div>', dom, re.S)
    assert errors and errors.group(1).strip() == "", f"Vega reported: {errors.group(1)[:2000]}"
    drawn = len(re.findall(r'<(?:canvas|svg)[^>]*class="marks"', dom))
    assert drawn == vega, f"{drawn} of {vega} Vega charts drew (screenshot: {tmp_path / 'plots.png'})"
    for src in images:
        assert (out / src).is_file() and (out / src).stat().st_size > 1000, src
