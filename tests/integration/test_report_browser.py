"""``mvcore report`` opened in a real browser: headless Chromium loads the page of the shared
trained model with its predicted videos, runs its scripts, and the DOM afterwards must hold
the drawn figures (the 3D view on a WebGL canvas), the tables and no script error. The
screenshot is saved beside the test's files (``report.png``) for a person to look at.

Skips where no Chromium is installed (Debian: ``apt-get install chromium``; ``.ci/run``
installs it)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mvcore.cli.main import main
from mvcore.example import KEYPOINT_NAMES

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1280, 4000)


def _browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.skip(f"no Chromium installed (looked for {', '.join(BROWSERS)}); on Debian: "
                    "apt-get install chromium")
    return found


class _Dom(HTMLParser):
    """What the test reads from the DOM: the tags and classes inside each figure div, the
    text of the script-error box and the text of every table cell."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, figure id it opens)
        self.figures: dict[str, dict[str, set[str]]] = {}
        self.error_box: dict[str, str] | None = None
        self.error_text = ""
        self.cells: list[str] = []
        self._in_cell = self._in_errors = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        classes = set(attr.get("class", "").split())
        for info in (self.figures[f] for _, f in self.stack if f):
            info["tags"].add(tag)
            info["classes"] |= classes
        opens = attr.get("id") if attr.get("id", "").startswith("figure-") else None
        if opens:
            self.figures[opens] = {"tags": set(), "classes": set(classes)}
        if attr.get("id") == "script-errors":
            self.error_box, self._in_errors = attr, True
        if tag == "td":
            self._in_cell = True
            self.cells.append("")
        if tag not in self.VOID:
            self.stack.append((tag, opens))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
        if tag == "td":
            self._in_cell = False
        if tag == "div":
            self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data
        if self._in_errors:
            self.error_text += data


@pytest.fixture(scope="module")
def report_page(trained_example, tmp_path_factory) -> Path:
    """A copy of the shared model with its example videos predicted (threshold 0, so the
    2-epoch model's points are triangulated) and its report written."""
    model = tmp_path_factory.mktemp("report") / "model"
    shutil.copytree(trained_example, model)
    assert main(["predict", str(model), "--batch-size", "8", "--confidence-threshold", "0",
                 "--device", "cpu"]) == 0
    assert main(["report", str(model)]) == 0
    return model / "report.html"


def test_report_renders_in_chromium(report_page, tmp_path):
    browser = _browser()
    screenshot = tmp_path / "report.png"
    # one run: the DOM after the scripts ran (virtual time lets plotly finish) and the picture
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-dev-shm-usage",
         "--enable-unsafe-swiftshader", "--use-angle=swiftshader",  # software WebGL for 3D
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=10000",
         "--dump-dom", f"--screenshot={screenshot}", report_page.as_uri()],
        capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line], console

    dom = _Dom()
    dom.feed(run.stdout)
    # the page's own error box (filled by window.onerror) stayed hidden and empty
    assert dom.error_box is not None and "hidden" in dom.error_box, dom.error_text
    assert not dom.error_text.strip()
    # every figure was drawn: loss curves; 3D pose, disagreement, traces of the session
    assert sorted(dom.figures) == [f"figure-{i}" for i in range(1, 5)]
    for name, info in dom.figures.items():
        assert "js-plotly-plot" in info["classes"], name
        assert "main-svg" in info["classes"], name
    pose = dom.figures["figure-2"]
    assert "canvas" in pose["tags"] and "gl-container" in pose["classes"]
    assert "slider-container" in pose["classes"]  # the frame slider
    assert "scatterlayer" in dom.figures["figure-4"]["classes"]  # the traces' lines
    # the tables: metrics, a row per keypoint, a row per view, the worst frames
    assert "validation_pixel_error_mean" in dom.cells
    assert "No test split: these are the <b>validation</b> frames" in run.stdout  # 40 frames
    assert set(KEYPOINT_NAMES) <= set(dom.cells)
    assert {"cam_a", "cam_b", "cam_c"} <= set(dom.cells)

    image = np.asarray(Image.open(screenshot).convert("L"))
    assert image.shape == (WINDOW[1], WINDOW[0])
    assert image.std() > 10  # drawn, not a blank page
    shutil.copy(screenshot, report_page.parent / "report.png")  # kept beside the page too
