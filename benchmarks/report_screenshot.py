"""The study report in a real headless browser: does its first screen show the answer?

Builds (or reuses) a study's report, screenshots ``report.html`` at 1280×900 with
:func:`synthmed.study.browser.screenshot` and checks:

- the first section of the page is the summary;
- every generator of the study (its finished ``fit`` stages, read independently of the
  summary code) is named in a table cell before the settings section;
- the first screen is drawn on (share of non-white pixels) and holds the summary's figure of
  real beside synthetic samples (share of pixels in colour: the tumour masks are the report's
  only colour; a report opening with the settings tables has none).

The study is ``--study DIR`` (a finished study folder, e.g. ``synthmed demo``'s), else the
packaged demo study with its step counts cut (``synthmed demo --smoke``: the same stages and
report layout in about a minute) run into a temporary folder. Without a browser (Chromium / Chrome, or
``$SYNTHMED_BROWSER``) the JSON says so under ``skipped`` and the script exits 0.
Writes benchmarks/results/report_screenshot.json and the screenshot beside it.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from _common import RESULTS, write_result

NON_WHITE_TARGET = 0.1
#: Any tumour colour on the first screen: a page opening with the settings has exactly 0. The demo's
#: tumours cover about 1 % of a 32 px slice, so its figure colours 0.003 of the screen.
COLOUR_TARGET = 0.001


def generators(study: Path) -> list[str]:
    """The generators of the study's finished ``fit`` stages."""
    from synthmed.study.records import finished_stages

    return sorted({str(r["labels"]["generator"]) for r in finished_stages(study) if r["kind"] == "fit"})


def placement(page: str, names: list[str]) -> dict[str, bool]:
    """Per generator: whether a table cell naming it comes before the settings section."""
    settings = page.find('<h2 id="settings"')
    return {name: -1 < page.find(f"<td>{name}</td>") < settings for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=None, help="a finished study folder (default: run the demo)")
    parser.add_argument("--out", type=Path, default=RESULTS / "report_screenshot.json")
    args = parser.parse_args()

    from synthmed.errors import SynthmedError
    from synthmed.demo import run_demo
    from synthmed.study import write_report
    from synthmed.study.browser import SCREEN, find_browser, screen_fractions, screenshot

    try:
        browser = find_browser()
    except SynthmedError as exc:
        write_result(args.out, {"skipped": str(exc)})
        return
    with tempfile.TemporaryDirectory(prefix="synthmed-report-shot-") as tmp:
        study = args.study
        if study is None:
            study = Path(tmp) / "demo"
            run_demo(study, progress=False, smoke=True)
        _, page = write_report(study)
        png = args.out.with_suffix(".png")
        start = time.perf_counter()
        screenshot(page, png, browser=browser)
        seconds = time.perf_counter() - start
        text = page.read_text()
        names = generators(study)
        first = (re.findall(r'<h2 id="([^"]+)"', text) or [None])[0]
    fractions = screen_fractions(png)
    named = placement(text, names)
    write_result(args.out, {
        "study": str(args.study or "packaged demo (temporary folder)"), "browser": browser, "screen": list(SCREEN),
        "screenshot": str(png), "screenshot_s": round(seconds, 2),
        "first_section": first, "generators": names, "named_before_settings": named,
        "non_white_fraction": round(fractions["non_white"], 4), "colour_fraction": round(fractions["colour"], 4),
        "targets": {"first_section": "summary", "non_white_fraction": f"> {NON_WHITE_TARGET}",
                    "colour_fraction": f"> {COLOUR_TARGET}", "named_before_settings": "all"},
        "meets_target": bool(first == "summary" and names and all(named.values())
                             and fractions["non_white"] > NON_WHITE_TARGET and fractions["colour"] > COLOUR_TARGET),
    })


if __name__ == "__main__":
    main()
