"""Screenshot of the live sliders, as a reader with a kernel sees them, for the sliders chapter.

    .venv/bin/python tools/screenshot_live_sliders.py [--out book/images/live_sliders_jupyterlab.png]

Starts JupyterLab (the same isolated server as tests/test_live_sliders_browser.py), runs the
sliders chapter's live cell on its trained IntroVAC (cpu profile; the checkpoints must be in
data/checkpoints, i.e. the editing or sliders chapter ran), moves both sliders with the keyboard in
headless Chromium, and saves the widget. The HTML book cannot run a kernel; this picture is what
the cell looks like when one runs. Not a test (the name does not start with test_).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the live-slider browser test's server and browser settings

import check_book  # noqa: E402
import nbformat  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from test_live_sliders_browser import CHROMIUM, FRONTENDS, JupyterServer  # noqa: E402

CELL = """\
import torch
from latentlab.config import Profile
from latentlab.chapters.face_editing import chapter_run
from latentlab.editing.sliders import LiveSliders

run = chapter_run(Profile("cpu", "screenshot"))
model, report = run.train("introvac", "EyeFacial")  # the editing chapter's settings (run.train)
assert report.resumed, report  # the chapter's model, not a fresh one
judge = run.judge()
x, y = run.faces.split("EyeFacial", "test")
picks = torch.cat([torch.nonzero((y == 0).all(1))[:2, 0], torch.nonzero((y == 1).all(1))[:1, 0]])
live = LiveSliders(model, x[picks], y[picks].long(), span=8.0, caption=judge.reading(["Eyeglasses", "Facial_Hair"]))
live"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "images" / "live_sliders_jupyterlab.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "notebooks").mkdir()
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, tmp / "notebooks" / "live.ipynb")
        server = JupyterServer("lab", tmp / "notebooks", tmp / "home")
        try:
            server.wait_until_up()
            with sync_playwright() as playwright:
                browser = check_book.launch_browser(playwright, CHROMIUM)
                context = browser.new_context(viewport={"width": 1100, "height": 900}, service_workers="block")
                page = context.new_page()
                page.route("**/*", lambda route: route.continue_() if "127.0.0.1" in route.request.url
                           else route.abort())
                page.goto(f"{server.url}/{FRONTENDS['lab']['page'].format(name='live.ipynb')}?token={server.token}")
                cell = page.locator(".jp-Notebook .jp-CodeCell").first
                cell.locator(".cm-content").wait_for(timeout=90_000)
                deadline = time.monotonic() + 90
                while not ((k := server.kernel("live.ipynb")) and k["connections"] >= 1
                           and k["execution_state"] == "idle"):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the kernel did not start: sessions {server.api('sessions')}\n"
                                         f"{server.log_tail()}")
                    page.wait_for_timeout(500)  # not time.sleep: the route handler must keep running
                cell.locator(".cm-content").click()
                page.keyboard.press("Control+Enter")
                widget = cell.locator(".jp-OutputArea-output .widget-vbox").first
                widget.locator(".widget-slider").nth(1).wait_for(timeout=120_000)
                handles = widget.locator(".noUi-handle")
                handles.nth(0).focus()
                page.keyboard.press("End")  # delta Eyeglasses to +8
                handles.nth(1).focus()
                for _ in range(25):  # delta Facial_Hair to +4 (steps of 0.16)
                    page.keyboard.press("ArrowRight")
                deadline = time.monotonic() + 30  # the last redraw done: the kernel is idle again
                page.wait_for_timeout(1000)
                while server.kernel("live.ipynb")["execution_state"] != "idle" and time.monotonic() < deadline:
                    page.wait_for_timeout(200)
                page.wait_for_timeout(1000)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                widget.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.stop()
    print(json.dumps({"screenshot": str(args.out)}))


if __name__ == "__main__":
    sys.exit(main())
