"""The report opens with the answer: a summary section first, one row per generator with its
relative WT Dice (synthetic only and synthetic+real, mean ± sd over seeds), FD rank and
memorization, and real beside synthetic samples; missing pieces show as "—"; a real headless
browser shows the summary on the first screen."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_study import GENERATORS, run_fake_study
from report_html import report_tables

from synthmed.errors import SynthmedError
from synthmed.study import write_report
from synthmed.study.browser import find_browser, screen_fractions, screenshot
from synthmed.study.results import read_results
from synthmed.study.summary import MAX_CORRELATION, MEMORIZED, MIXED, SYNTHETIC, describe_scale, summary_table

SEEDS = (0, 1)
#: the fake study's Dice (see fake_study.fake_functions): real-only 0.8, synthetic d, half-and-half
#: (d + 0.8) / 2, each + 0.01 × seed; the memorization threshold is the spec's default.
REAL = [0.8 + 0.01 * s for s in SEEDS]
THRESHOLD = 0.95


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.4g} ± {np.std(values, ddof=1):.2g} (n={len(values)})"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = run_fake_study(tmp_path_factory.mktemp("summary") / "fake")
    write_report(out)
    return out


def _section_ids(page: str) -> list[str]:
    return re.findall(r'<h2 id="([^"]+)"', page)


def test_summary_is_first_with_every_generators_numbers(study: Path) -> None:
    page = (study / "report.html").read_text()
    assert _section_ids(page)[0] == "summary"
    headings = [line for line in (study / "report.md").read_text().splitlines() if line.startswith("## ")]
    assert headings[0] == "## Summary"
    tables, texts = report_tables(page)
    (table,) = tables["summary"]
    rows = {row["generator"]: row for row in table}
    assert sorted(rows) == sorted(GENERATORS) and len(table) == len(GENERATORS)
    fd_order = sorted(GENERATORS, key=lambda g: -GENERATORS[g])  # fd = 10 (1 - d): best generator first
    for gen, d in GENERATORS.items():
        row = rows[gen]
        assert row["dataset"] == "phantom"
        assert row[SYNTHETIC] == _spread([(d + 0.01 * s) / r for s, r in zip(SEEDS, REAL)])
        assert row[f"{MIXED} (real fraction 0.5)"] == _spread([((d + 0.8) / 2 + 0.01 * s) / r for s, r in zip(SEEDS, REAL)])
        assert row["FD rank (domain)"] == f"{fd_order.index(gen) + 1} of {len(GENERATORS)}"
        assert row[MEMORIZED] == f"{100 * d / 4:.3g} % above {THRESHOLD:g}"
        assert row[MAX_CORRELATION] == f"{0.9 + d / 10:.4g}"
    assert f"phantom (unet): real-only WT Dice {np.mean(REAL):.4g} ± {np.std(REAL, ddof=1):.2g} (n=2)." in texts["summary"]
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert summary.count('<img src="data:image/png;base64,') == 1  # real beside synthetic, one row per generator
    assert 'class="warning"' in summary and "2 phantom patients (1 train + 1 test), 16 px" in summary


def test_a_generator_without_segmentation_or_memorization_shows_dashes(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial"
    shutil.copytree(study, out)
    for stage in (out / "stages").iterdir():  # stylegan2 loses its memorization, train and evaluate stages
        record = json.loads((stage / "stage.json").read_text())
        if record["labels"].get("generator") == "stylegan2" and record["kind"] in ("memorization", "train", "evaluate"):
            shutil.rmtree(stage)
    results = pd.read_csv(out / "results.csv")
    keep = ~((results.generator == "stylegan2") & (results.metric.str.startswith("memorization/")
                                                   | results.metric.isin(["dice", "hd95", "dice_sd", "hd95_sd"])))
    results[keep].to_csv(out / "results.csv", index=False)
    _, page = write_report(out, force=True)
    rows = {row["generator"]: row for row in report_tables(page.read_text())[0]["summary"][0]}
    assert rows["stylegan2"][SYNTHETIC] == rows["stylegan2"][MEMORIZED] == rows["stylegan2"][MAX_CORRELATION] == "—"
    assert rows["stylegan2"]["FD rank (domain)"] == "3 of 3"  # its fidelity stage is still there
    assert rows["ddpm"][SYNTHETIC] != "—"


def test_an_empty_study_or_a_bare_generator_renders_without_numbers(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "stages").mkdir(parents=True)
    _, page = write_report(empty)
    tables, texts = report_tables(page.read_text())
    assert _section_ids(page.read_text())[0] == "summary" and "summary" not in tables
    assert texts["summary"] == ["No generator has finished a stage yet."]
    fit = {"kind": "fit", "labels": {"dataset": "phantom", "generator": "rflow"}, "config": {"preset": "tiny"},
           "folder": tmp_path}
    table = summary_table([fit], read_results(empty), pd.DataFrame(), pd.DataFrame())
    assert table.to_dict("records") == [{"dataset": "phantom", "generator": "rflow", SYNTHETIC: "—", MIXED: "—",
                                         "FD rank": "—", MEMORIZED: "—", MAX_CORRELATION: "—"}]


def test_a_headless_browser_shows_the_summary_on_the_first_screen(study: Path, tmp_path: Path) -> None:
    try:
        browser = find_browser()
    except SynthmedError as exc:
        pytest.skip(str(exc))
    page = study / "report.html"
    text = page.read_text()
    settings = text.index('<h2 id="settings"')
    assert _section_ids(text)[0] == "summary"
    assert all(-1 < text.find(f"<td>{gen}</td>") < settings for gen in GENERATORS)
    png = screenshot(page, tmp_path / "report.png", browser=browser)
    fractions = screen_fractions(png)
    # the first screen holds the summary's table and its real-beside-synthetic figure: the masks are
    # the only colour on the page's first 900 px (without the summary the settings tables show: colour 0)
    assert fractions["non_white"] > 0.1, fractions
    assert fractions["colour"] > 0.005, fractions


def test_no_browser_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SYNTHMED_BROWSER", str(tmp_path / "no-such-browser"))
    with pytest.raises(SynthmedError, match="SYNTHMED_BROWSER=.*no such browser"):
        find_browser()
    monkeypatch.delenv("SYNTHMED_BROWSER")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SynthmedError, match="no headless browser found: none of chromium"):
        find_browser()


def test_the_scale_counts_patients_not_visits(tmp_path: Path) -> None:
    """A longitudinal dataset of 8 subjects of 2 visits: 8 patients, not 16."""
    from tiny_stores import make_store

    make_store(tmp_path / "prepare" / "store", n=32, n_test=8, visits=2)
    record = {"kind": "prepare", "config": {"size": 16}, "labels": {"dataset": "cohort"},
              "folder": tmp_path / "prepare"}
    assert describe_scale([record]) == ("cohort: 8 patients (6 train + 2 test), 16 px", False)
