"""Screenshots of the report in a real headless browser (Chromium or Chrome), for checking what
a reader sees first, not only what the HTML holds.

The browser is ``$SYNTHMED_BROWSER`` when set (a command name or a path), else the first of
:data:`BROWSERS` on ``PATH``. It runs as ``<browser> --headless --disable-gpu --no-sandbox
--screenshot=OUT --window-size=W,H file://PAGE`` with a throw-away profile folder; the PNG
shows the first ``W × H`` pixels of the page (one screen). :func:`screen_fractions` says how
much of a screenshot is drawn on and how much is in colour (the report's figures overlay the
tumour masks in colour; its text and tables are black, grey and white).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from synthmed.atomic import atomic_file
from synthmed.errors import SynthmedError

#: command names tried, in order, when :data:`ENV` is not set.
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: environment variable naming the browser to use instead.
ENV = "SYNTHMED_BROWSER"
#: the screen a screenshot shows: (width, height) in pixels.
SCREEN = (1280, 900)
#: a pixel is drawn on when a channel is below this (0–255); in colour when its channels span more.
WHITE, COLOUR_SPAN = 245, 80


def find_browser() -> str:
    """The path of the browser to screenshot with (see the module docstring).

    Raises:
        SynthmedError: ``$SYNTHMED_BROWSER`` names nothing runnable, or none of :data:`BROWSERS`
            is on ``PATH``.
    """
    chosen = os.environ.get(ENV)
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise SynthmedError(f"{ENV}={chosen}: no such browser (give a Chromium or Chrome command or path)")
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found
    raise SynthmedError(f"no headless browser found: none of {', '.join(BROWSERS)} is on PATH (install Chromium, "
                        f"e.g. `apt-get install chromium`, or set {ENV})")


def screenshot(page: str | Path, out: str | Path, *, size: tuple[int, int] = SCREEN, timeout: float = 120.0,
               browser: str | None = None) -> Path:
    """Screenshot the HTML file ``page`` as it opens in a ``size`` window; write the PNG to ``out``
    (atomically) and return its path.

    Args:
        page: an HTML file.
        out: the PNG to write.
        size: window ``(width, height)`` in pixels.
        timeout: seconds the browser may take.
        browser: the browser to run (default: :func:`find_browser`).

    Raises:
        SynthmedError: no such page, no browser, or the browser failed or wrote no screenshot
            (its last lines of output in the message).
    """
    page, out = Path(page).resolve(), Path(out).resolve()
    if not page.is_file():
        raise SynthmedError(f"{page}: no such HTML file to screenshot")
    command = browser or find_browser()
    with tempfile.TemporaryDirectory(prefix="synthmed-browser-") as profile, atomic_file(out) as tmp:
        args = [command, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--screenshot={tmp}", f"--window-size={size[0]},{size[1]}",
                page.as_uri()]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SynthmedError(f"{command}: no screenshot of {page} within {timeout:g} s") from None
        if done.returncode != 0 or not Path(tmp).is_file() or Path(tmp).stat().st_size == 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise SynthmedError(f"{command}: no screenshot of {page} (exit {done.returncode}): {tail}")
    return out


def screen_fractions(png: str | Path) -> dict[str, float]:
    """``{"non_white", "colour"}``: the shares of a PNG's pixels that are drawn on (a channel below
    :data:`WHITE`) and in colour (channels spanning more than :data:`COLOUR_SPAN`), in 0–255 units.

    Raises:
        SynthmedError: not a readable PNG.
    """
    import matplotlib.image

    try:
        pixels = matplotlib.image.imread(str(png))
    except (OSError, ValueError, SyntaxError) as exc:
        raise SynthmedError(f"{png}: not a readable PNG ({exc})") from None
    rgb = np.asarray(pixels, dtype=np.float64)[..., :3]
    rgb = rgb * 255 if rgb.max() <= 1.0 else rgb
    return {"non_white": float((rgb.min(axis=-1) < WHITE).mean()),
            "colour": float((rgb.max(axis=-1) - rgb.min(axis=-1) > COLOUR_SPAN).mean())}
