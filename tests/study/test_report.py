"""The study report from a hand-made finished study: every section, its tables' rows, embedded images only."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from fake_study import GENERATORS, SPEC, run_fake_study
from report_html import report_tables
from typer.testing import CliRunner

from synthmed.cli import app
from synthmed.study import SECTIONS, write_report
from synthmed.study.report import OPTIONAL_SECTIONS
from synthmed.study.sections import fmt


class _Page(HTMLParser):
    """Section ids, the rows of each section's tables and every image source."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.rows: dict[str, int] = {}
        self.images: list[str] = []
        self.alts: list[str] = []
        self.external: list[str] = []
        self._table: str | None = None
        self._body = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "h2":
            self.sections.append(a["id"])
        elif tag == "table":
            self._table = a.get("class")
        elif tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body and self._table:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1
        elif tag == "img":
            self.images.append(a["src"])
            self.alts.append(a.get("alt", ""))
        if tag in ("link", "script") or (tag != "img" and ("href" in a or "src" in a)):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._body = False
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_fake_study(tmp_path_factory.mktemp("report") / "fake")


def test_report_has_every_section_its_rows_and_only_embedded_images(study: Path) -> None:
    md, page = write_report(study)
    parser = _Page()
    parser.feed(page.read_text())
    assert parser.sections == [sid for sid, _ in SECTIONS if sid not in OPTIONAL_SECTIONS]  # no classifiers here
    assert parser.external == []
    # 1 summary figure (real beside synthetic), 3 generators + 1 real prepare gallery, 1 sweep plot,
    # 1 pre-training plot, 3 memorization histograms, 1 closest-pair gallery, generator and segmenter training curves
    assert len(parser.images) == 1 + 3 + 1 + 1 + 1 + 3 + 1 + 2
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "phantom: ddpm: closest pairs (synthetic | nearest training sample | difference)" in parser.alts
    assert {"phantom: generator training curves", "phantom: unet training curves"} <= set(parser.alts)
    rows = parser.rows
    assert rows["generation-metrics"] == 3 and rows["rank-tables"] == 3 and rows["memorization"] == 3
    # real; 3 × synthetic; 3 × synthetic+real at 0.5; the curve: real and 3 × pretrained on half the subjects
    assert rows["segmentation"] == 1 + 3 + 3 + 1 + 3 and rows["relative-dice"] == 3 + 3 + 3
    assert rows["pretraining"] == 3
    pretraining = page.read_text().split('id="pretraining"')[1].split("</section>")[0]
    assert pretraining.count("<td>0.05 ± 0</td>") == 3 * 3  # the gain, per generator and region, both seeds
    assert rows["rank-correlation"] == 4  # fd, kid_mean, precision, recall (ms_ssim is not ranked)
    text = page.read_text()
    # tiny presets are flagged, naming the scale: the fake prepare store holds 2 patients of 16 px
    assert "Small scale — tiny preset, 3–5 training steps; phantom: 2 phantom patients (1 train + 1 test), 16 px" in text
    assert "0.705 ± 0.0071" in text  # ddpm synthetic Dice: mean ± sd over seeds 0, 1
    # FD, KID, precision and recall all order the generators as Dice does: ρ = 1
    correlation = text.split('id="rank-correlation"')[1].split("</section>")[0]
    assert correlation.count("<td>1</td>") == 4
    headings = [line[3:] for line in md.read_text().splitlines() if line.startswith("## ")]
    assert headings == [title for sid, title in SECTIONS if sid not in OPTIONAL_SECTIONS]


def test_report_with_two_generators_says_na_and_cli_rebuilds(study: Path, tmp_path: Path) -> None:
    results = pd.read_csv(study / "results.csv")
    results[results.generator != "stylegan2"].to_csv(study / "results.csv", index=False)
    result = CliRunner().invoke(app, ["study", "report", str(study)])
    assert result.exit_code == 0, result.output
    text = (study / "report.html").read_text()
    correlation = text.split('id="rank-correlation"')[1].split("</section>")[0]
    assert "n/a" in correlation
    missing = CliRunner().invoke(app, ["study", "report", str(tmp_path / "none")])
    assert missing.exit_code != 0


def test_unchanged_study_reuses_the_report_and_a_change_rebuilds_it(study: Path, monkeypatch) -> None:
    from synthmed.study import report

    write_report(study)
    built = (study / "report.html").read_text()

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("rebuilt an unchanged report")

    with monkeypatch.context() as patch:
        patch.setattr(report, "build_sections", fail)
        assert write_report(study)[1].read_text() == built
        results = pd.read_csv(study / "results.csv")
        results.iloc[:-1].to_csv(study / "results.csv", index=False)  # one row less: the report is stale
        with pytest.raises(AssertionError, match="rebuilt"):
            write_report(study)
    write_report(study)
    (study / ".report.json").write_text("not json")
    with monkeypatch.context() as patch:
        patch.setattr(report, "build_sections", fail)
        with pytest.raises(AssertionError, match="rebuilt"):  # an unreadable cache means a rebuild
            write_report(study)


TWO = {**{k: v for k, v in SPEC.items() if k != "data"}, "name": "two", "real_fractions": [0.5],
       "datasets": [{**SPEC["data"], "name": "BraTS2020"},
                    {**SPEC["data"], "name": "BraTS2021", "phantom": {**SPEC["data"]["phantom"], "seed": 1}}]}


def test_two_datasets_group_every_table_rank_and_figure_by_dataset(tmp_path: Path) -> None:
    out = run_fake_study(tmp_path / "two", TWO)
    results = pd.read_csv(out / "results.csv")
    years = {"BraTS2020", "BraTS2021"}
    assert set(results.dataset) == years
    counts = results.groupby("dataset").size()
    assert counts["BraTS2020"] == counts["BraTS2021"] == len(results) // 2
    _, page = write_report(out)
    tables, _ = report_tables(page.read_text())
    # per dataset as many rows as the one-dataset study has (rank tables: one row per year × generator)
    single = {"generation-metrics": 3, "rank-tables": 3, "segmentation": 11, "relative-dice": 9,
              "rank-correlation": 4, "pretraining": 3, "memorization": 3}
    for section, rows in single.items():
        (table,) = tables[section]
        assert sorted(row["dataset"] for row in table) == sorted([*years] * rows), section
    assert {row["dataset"] for row in tables["settings"][0]} == years
    ranks = tables["rank-tables"][0]
    assert {(r["dataset"], r["generator"]) for r in ranks} == {(y, g) for y in years for g in GENERATORS}
    assert all(r["domain/fd"] == str(1 + sorted(GENERATORS.values(), reverse=True).index(GENERATORS[r["generator"]]))
               for r in ranks)  # ranked within each year
    parser = _Page()
    parser.feed(page.read_text())
    for year in years:  # each figure once per dataset, named by it
        mine = [alt for alt in parser.alts if year in alt]
        assert len(mine) == 1 + 3 + 1 + 1 + 1 + 3 + 1 + 2, mine
        assert f"{year}: Dice vs real fraction" in mine and f"{year}: generator training curves" in mine


def test_pretraining_curve_shows_the_ssl_arm_beside_the_supervised_one(tmp_path: Path) -> None:
    spec = {**SPEC, "name": "arms", "generators": [SPEC["generators"][0]], "train_sets": ["real"],
            "real_fractions": [], "fidelity": [], "pretraining": {"subject_fractions": [0.5],
                                                                 "modes": ["supervised", "ssl"]}}
    out = run_fake_study(tmp_path / "arms", spec)
    results = pd.read_csv(out / "results.csv")
    assert {"pretrained", "pretrained-ssl"} <= set(results.train_set)
    _, page = write_report(out)
    tables, texts = report_tables(page.read_text())
    (gain,) = tables["pretraining"]
    # one row per arm; the gains over scratch are the fake arms' (0.05 supervised, 0.03 ssl), both seeds
    assert {(row["pretraining"], row["generator"], row["WT"], row["ET"]) for row in gain} == {
        ("supervised", "ddpm", "0.05 ± 0", "0.05 ± 0"), ("ssl", "ddpm", "0.03 ± 0", "0.03 ± 0")}
    assert any("self-supervised" in text for text in texts["pretraining"])
    parser = _Page()
    parser.feed(page.read_text())
    assert "phantom: Dice vs share of real subjects" in parser.alts


def test_generation_metrics_of_slices_have_no_volume_table(study: Path) -> None:
    _, page = write_report(study)
    tables, texts = report_tables(page.read_text())
    (table,) = tables["generation-metrics"]  # one table; ms_ssim_real (in the results) is not a column
    assert list(table[0]) == ["dataset", "generator", "features", "fd", "kid_mean", "kid_std", "precision", "recall",
                              "ms_ssim"]
    assert not any("slice" in text for text in texts.get("generation-metrics", []))


MIXED = {**{k: v for k, v in SPEC.items() if k not in ("data", "real_fractions", "pretraining")}, "name": "mixed",
         "generators": [{"name": g, "preset": "tiny", "steps": 5} for g in ("ddpm", "progan")], "seeds": [0],
         "train_sets": ["real", "synthetic"],
         "datasets": [{**SPEC["data"], "name": "slices"}, {**SPEC["data"], "name": "volumes", "dims": 3}]}


def test_volumes_get_their_3d_metrics_table_and_slices_do_not(tmp_path: Path) -> None:
    from synthmed.study.details import VOLUME_SHOWN

    out = run_fake_study(tmp_path / "mixed", MIXED)
    results = pd.read_csv(out / "results.csv")
    _, page = write_report(out)
    tables, texts = report_tables(page.read_text())
    generation, volumes = tables["generation-metrics"]
    assert sorted(r["dataset"] for r in generation) == ["slices", "slices", "volumes", "volumes"]
    assert [(r["dataset"], r["generator"], r["features"]) for r in volumes] == [("volumes", "ddpm", "domain"),
                                                                              ("volumes", "progan", "domain")]
    assert list(volumes[0]) == ["dataset", "generator", "features", *VOLUME_SHOWN.values()]
    for row in volumes:  # each cell is the fidelity stage's number, as results.csv holds it
        mine = results[(results.dataset == "volumes") & (results.generator == row["generator"])]
        for name, title in VOLUME_SHOWN.items():
            (value,) = mine[mine.metric == f"domain/{name}"].value
            assert row[title] == fmt(float(value)), title
    assert float(volumes[0]["slice r real"]) > 0.5 and float(volumes[0]["MS-SSIM real"]) == 0.3
    (note,) = [t for t in texts["generation-metrics"] if t.startswith("Volumes (3D datasets)")]
    assert "2.5D" in note and "MS-SSIM is 3D" in note and "adjacent slices" in note
    header = next(line for line in (out / "report.md").read_text().splitlines() if "slice r real" in line)
    assert header.count("|") == 3 + len(VOLUME_SHOWN) + 1  # a Markdown table row: no "|" inside a title
