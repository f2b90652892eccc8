"""Building the study report, ``STUDY/report.md`` and a self-contained ``STUDY/report.html``, from the study folder.

Built from the study folder alone — the finished stages' ``stage.json`` / ``result.json`` /
stores and ``results.csv`` — so it needs neither the YAML nor a rerun. Sections (each an
``<h2 id=…>`` in the HTML and a ``##`` heading in Markdown, in :data:`SECTIONS` order): the
summary first (:mod:`.summary`: the study's scale, one row per generator — relative WT Dice,
FD rank, memorization — and real beside synthetic samples), then the details: settings
(presets and steps), generation metrics (for 3D datasets with the volume metrics), rank tables,
Dice and HD95 per region (mean ± sd over seeds), relative Dice (synthetic / matched real-only), Spearman correlation of
generation-metric ranks with Dice ranks, Dice vs real fraction, the synthetic pre-training
curve, the classifiers (clean and robust AUROC, AUROC against ε, saliency scores and galleries —
:mod:`.classifier_section`, only in a study with classifier results), disease progression
(AUROCs of fast progression with intervals, predicted follow-ups against copying the baseline,
galleries — :mod:`.progression_section`, only in a study with progression results), memorization histograms
and closest-pair galleries, sample galleries (masks overlaid) and training curves (from each
run's TensorBoard scalars) — :mod:`.details`. Images are
embedded as base64 PNG data URIs in both files (:mod:`.render`): nothing external is referenced.

Everything is grouped by dataset: each table's first column is ``dataset`` (a study of two
datasets has one rank-table row per dataset × generator), generators are ranked and
correlated within each dataset, and each figure is drawn per dataset, its caption starting
``<dataset>: ``. Ranks, relative Dice and rank correlations come from :mod:`.analysis`, the
figures from :mod:`.plots`.

Rebuilding is skipped when nothing it reads has changed: ``.report.json`` keeps a
fingerprint of the finished stages, ``results.csv``, the options and the report modules' code
(:data:`REPORT_CODE`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from synthmed.atomic import atomic_file
from synthmed.study import details
from synthmed.study.analysis import relative_dice_table
from synthmed.study.classifier_section import write_classifiers
from synthmed.study.plan import DONE_JSON, STAGES_DIR
from synthmed.study.progression_section import write_progression
from synthmed.study.records import evaluations, finished_stages
from synthmed.study.render import render_html, render_markdown
from synthmed.study.results import RESULTS_CSV, read_results
from synthmed.study.sections import Section
from synthmed.study.summary import write_summary

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_CACHE = ".report.json"
#: the modules (in this folder) whose code the report's fingerprint covers.
REPORT_CODE = ("report.py", "summary.py", "details.py", "classifier_section.py", "progression_section.py",
               "analysis.py", "records.py",
               "results.py", "plots.py", "render.py", "sections.py")


#: (id, title) of each section, in order.
SECTIONS = (
    ("summary", "Summary"),
    ("settings", "Settings"),
    ("generation-metrics", "Generation metrics"),
    ("rank-tables", "Rank tables"),
    ("segmentation", "Dice and HD95 per region"),
    ("relative-dice", "Relative Dice"),
    ("rank-correlation", "Rank correlation of generation metrics with Dice"),
    ("real-fraction", "Dice vs real fraction"),
    ("pretraining", "Synthetic pre-training curve"),
    ("classifiers", "Classifiers"),
    ("progression", "Disease progression"),
    ("memorization", "Memorization"),
    ("galleries", "Sample galleries"),
    ("training-curves", "Training curves"),
)

#: sections left out of a report that has nothing to put in them (a study without classifiers, or
#: without a progression section).
OPTIONAL_SECTIONS = ("classifiers", "progression")


def build_sections(out: str | Path, *, gallery_samples: int = 4, closest_pairs: int = 4
                   ) -> tuple[str, list[Section]]:
    """The report's title and sections (see :data:`SECTIONS`; the empty :data:`OPTIONAL_SECTIONS` left
    out) from the study folder ``out``."""
    out = Path(out)
    stages = finished_stages(out)
    results = read_results(out)
    names = set(results.study.dropna()) if not results.empty else set()
    title = f"Study report: {next(iter(names)) if len(names) == 1 else out.name}"
    sections = {sid: Section(sid, t) for sid, t in SECTIONS}
    details.write_settings(stages, sections["settings"])
    table = details.write_generation(results, sections["generation-metrics"])
    ranks = details.write_ranks(table, sections["rank-tables"])
    matched, unmatched = relative_dice_table(*evaluations(stages))
    write_summary(stages, results, matched, ranks, sections["summary"])
    details.write_segmentation(results, sections["segmentation"])
    details.write_relative(matched, unmatched, sections["relative-dice"])
    details.write_correlation(results, ranks, sections["rank-correlation"])
    details.write_real_fraction(results, sections["real-fraction"])
    details.write_pretraining(results, sections["pretraining"])
    write_classifiers(stages, results, sections["classifiers"])
    write_progression(stages, results, sections["progression"])
    details.write_memorization(stages, results, sections["memorization"], closest_pairs)
    details.write_galleries(stages, sections["galleries"], gallery_samples)
    details.write_training_curves(stages, sections["training-curves"])
    return title, [s for s in sections.values() if s.blocks or s.id not in OPTIONAL_SECTIONS]


def report_fingerprint(out: str | Path, **options: Any) -> str:
    """SHA-256 of what the report is built from: the finished stages' names, ``results.csv``,
    the ``options`` and the code of the report's modules (:data:`REPORT_CODE`)."""
    out = Path(out)
    digest = hashlib.sha256()
    for name in REPORT_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    root = out / STAGES_DIR
    names = sorted(f.name for f in root.iterdir() if (f / DONE_JSON).is_file()) if root.is_dir() else []
    digest.update(json.dumps({"stages": names, "options": options}, sort_keys=True).encode())
    csv = out / RESULTS_CSV
    digest.update(csv.read_bytes() if csv.is_file() else b"")
    return digest.hexdigest()


def write_report(out: str | Path, *, gallery_samples: int = 4, closest_pairs: int = 4,
                 force: bool = False) -> tuple[Path, Path]:
    """(Re)build ``out/report.md`` and ``out/report.html`` (atomically); return their paths.

    Unless ``force``, nothing is rebuilt when both files exist and :func:`report_fingerprint`
    equals the one recorded in ``out/.report.json`` at the last build.
    """
    out = Path(out)
    md, page, cache = out / REPORT_MD, out / REPORT_HTML, out / REPORT_CACHE
    fingerprint = report_fingerprint(out, gallery_samples=gallery_samples, closest_pairs=closest_pairs)
    if not force and md.is_file() and page.is_file() and cache.is_file():
        try:
            if json.loads(cache.read_text()).get("fingerprint") == fingerprint:
                return md, page
        except ValueError:
            pass  # an unreadable cache only means a rebuild
    title, sections = build_sections(out, gallery_samples=gallery_samples, closest_pairs=closest_pairs)
    with atomic_file(md) as tmp:
        tmp.write_text(render_markdown(title, sections))
    with atomic_file(page) as tmp:
        tmp.write_text(render_html(title, sections))
    with atomic_file(cache) as tmp:
        tmp.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
    return md, page
