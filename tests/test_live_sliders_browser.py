"""LiveSliders in a browser, with a live kernel: JupyterLab 4 and Jupyter Notebook 7, end to end.

tests/test_sliders.py checks the Python side of `latentlab.editing.sliders.LiveSliders`. This file checks
what a reader sees: for each frontend it starts a real Jupyter server from this environment
(on 127.0.0.1, a free port, a random token, config and runtime directories of its own), opens a
one-cell notebook in headless Chromium (driven by `playwright`, Debian's `/usr/bin/chromium`, no
browser download), runs the cell with the keyboard, and then uses the widget:

1. the first slider, moved with the keyboard, changes the decoded image and the "redraw N ms" line;
2. "reset" puts the slider back at its starting value and the decoded image back to the first picture;
3. another entry of the "input image" dropdown changes the input image;
4. the page threw nothing and logged no console error (one known Notebook 7 start-up error is
   tolerated, see KNOWN_START_UP_ERRORS), and requested nothing but 127.0.0.1.

A screenshot of the widget after the move is saved to tmp_path and, when LATENTLAB_SCREENSHOTS
names a directory, copied there as live-sliders-<frontend>.png.

It skips only when Chromium ($CHROMIUM, chromium on PATH or /usr/bin/chromium), playwright or the frontend package
is missing; anything else that does not happen fails, naming the step.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import check_book  # the book check's Chromium lookup and launch flags, shared
import numpy as np
import pytest
from PIL import Image

CHROMIUM = check_book.find_chromium()
if CHROMIUM is None:
    pytest.skip("Chromium is not installed ($CHROMIUM, chromium on PATH, /usr/bin/chromium): the live-slider "
                "browser test cannot run; `sudo apt-get install --no-install-recommends chromium` installs it",
                allow_module_level=True)
pytest.importorskip("playwright", reason="playwright is not installed (test extra): no browser to drive")
nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed: no notebook to write")

from playwright.sync_api import Error as PlaywrightError  # noqa: E402  (after the skips, on purpose)
from playwright.sync_api import sync_playwright  # noqa: E402

# What each frontend is: the module that starts its server (`python -m jupyterlab` is `jupyter lab`)
# and the page that opens a notebook in it.
FRONTENDS = {
    "lab": {"module": "jupyterlab", "page": "lab/tree/{name}"},
    "notebook": {"module": "notebook", "page": "notebooks/{name}"},
}

# The cell a reader would run. A tiny untrained VAC keeps the kernel light (2 sliders, 32 px images).
CELL = """\
import torch
from latentlab import face_model
from latentlab.editing.sliders import LiveSliders
torch.manual_seed(0)
model = face_model("vac", image_size=32, channels=(8, 16, 32), latent_dim=8, num_labels=2).eval()
live = LiveSliders(model, torch.rand(3, 3, 32, 32), torch.tensor([[0, 1], [1, 0], [0, 0]]))
live"""

DISPLAY_SIZE = 160  # LiveSliders' default display_size: the PNGs the kernel sends are this big

# Generous but bounded (seconds). The first JupyterLab page load can take 20-40 s on a busy 2-core
# machine; importing torch in a fresh kernel takes a few seconds more.
SERVER_START_S = 60
PAGE_LOAD_S = 90
KERNEL_READY_S = 90
WIDGET_RENDER_S = 90
REDRAW_S = 30

# Errors the frontend itself throws while it starts, before any cell runs, that we tolerate by
# message. Notebook 7.6.5 (JupyterLab 4.6 packages): @jupyterlab/shortcuts-extension reads the
# settings schema of @jupyterlab/docmanager-extension:plugin before that plugin is loaded
# (notebook_core.js, SettingRegistry.pluginChanged). It is thrown before any cell has run (no widget
# exists yet) and also with the widget manager (@jupyter-widgets/jupyterlab-manager) disabled in
# page_config.json, so it is not the widgets'; it needs no network, so it is not offline-related
# either: it is unavoidable in this release. Only a page error with this exact message, thrown
# before the cell was run, from notebook_core, is let through.
KNOWN_START_UP_ERRORS = {
    "notebook": [("Cannot read properties of undefined (reading 'schema')", "notebook_core")],
}


# ---------------------------------------------------------------------------------------------
# The Jupyter server
# ---------------------------------------------------------------------------------------------

class JupyterServer:
    """A `jupyter lab` / `jupyter notebook` process of our own, and the REST calls the test needs."""

    def __init__(self, frontend: str, root: Path, home: Path):
        self.frontend, self.root = frontend, root
        self.token = secrets.token_hex(16)
        with socket.socket() as probe:  # a free port; port_retries=0 makes a lost race fail loudly
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "server.log"

        # Everything Jupyter writes or reads as user state lives under tmp_path: nothing of the
        # developer's ~/.jupyter (settings, workspaces, extensions' config) can change the test.
        env = {k: v for k, v in os.environ.items()
               if k not in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "JUPYTER_PORT")}
        env.update({
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTER_DATA_DIR": str(home / "data"),  # the python3 kernel spec still comes from sys.prefix
            "JUPYTERLAB_SETTINGS_DIR": str(home / "config" / "lab" / "user-settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "config" / "lab" / "workspaces"),
            "IPYTHONDIR": str(home / "ipython"),
            # one thread in the kernel: the model is tiny, and other work may share this machine
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        })
        (home / "config").mkdir(parents=True, exist_ok=True)
        # What the *server* would fetch from the internet (the route handler only sees the
        # browser's requests): JupyterLab's news feed, its "new version" check against PyPI, and
        # the PyPI-backed extension manager. Read by both `jupyter lab` and `jupyter notebook`,
        # which load the same jupyterlab server extension.
        (home / "config" / "jupyter_server_config.json").write_text(json.dumps({
            "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                       "extension_manager": "readonly"},
        }))
        command = [
            sys.executable, "-m", FRONTENDS[frontend]["module"],
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.allow_root=True",  # the test machines run as root; harmless otherwise
        ]
        with open(self.log_path, "wb") as log:
            # its own process group, so that stop() can end it and anything it started
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the {self.frontend} server exited with code {self.process.returncode} before "
                            f"answering on {self.url}; its log ends:\n{self.log_tail()}")
            try:
                self.api("status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        pytest.fail(f"the {self.frontend} server did not answer on {self.url}/api/status within "
                    f"{SERVER_START_S} s; its log ends:\n{self.log_tail()}")

    def kernel(self, notebook: str) -> dict | None:
        """The kernel model of `notebook`'s session ({id, execution_state, connections, ...}), or None."""
        for session in self.api("sessions"):
            if session.get("path") == notebook and session.get("kernel"):
                return session["kernel"]
        return None

    def stop(self) -> None:
        # A polite shutdown first: the server then shuts its kernels down too (they run in process
        # groups of their own, and would otherwise only notice their parent died a second later).
        if self.process.poll() is None:
            try:
                self.api("shutdown", method="POST")
                self.process.wait(timeout=10)
            except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
                pass
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if self.process.poll() is not None:
                break
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        try:  # anything left in the group (the server is its leader), e.g. a language server
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def server(frontend, tmp_path, request):
    pytest.importorskip(FRONTENDS[frontend]["module"],
                        reason=f"{FRONTENDS[frontend]['module']} is not installed: no {frontend} frontend to test")
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, root / "live.ipynb")

    jupyter = JupyterServer(frontend, root, tmp_path / "jupyter")
    request.addfinalizer(jupyter.stop)  # registered before waiting: a server that never answers is ended too
    jupyter.wait_until_up()
    return jupyter


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = check_book.launch_browser(pw, CHROMIUM)  # headless, with the book check's offline flags
        yield chromium
        chromium.close()


# ---------------------------------------------------------------------------------------------
# What the page did: console errors, uncaught exceptions, requests that left the machine
# ---------------------------------------------------------------------------------------------

class Journal:
    def __init__(self):
        self.phase = "loading the page"  # what the test was doing, written next to each error
        self.console_errors: list[str] = []
        self.page_errors: list[tuple[str, str, str]] = []  # (phase, message, stack)
        self.blocked: list[str] = []
        self.timings: dict[str, float] = {}
        self._started = time.monotonic()

    def watch(self, context, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append((self.phase, error.message, error.stack or "")))
        context.route("**/*", self._only_local)

    def _on_console(self, message) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            self.console_errors.append(f"[{self.phase}] {message.text} ({where})")

    def _only_local(self, route) -> None:
        # The page may talk to our server and nothing else: a request elsewhere would be a leak
        # (and fails offline), so it is refused and listed.
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def step(self, phase: str) -> None:
        now = time.monotonic()
        self.timings[self.phase] = now - self._started
        self.phase, self._started = phase, now

    def report(self) -> str:
        lines = [f"console errors: {self.console_errors or 'none'}",
                 f"page errors: {[f'[{p}] {m}' for p, m, _ in self.page_errors] or 'none'}",
                 f"requests refused (not 127.0.0.1): {self.blocked or 'none'}"]
        return "\n".join(lines)


def fail(journal: Journal, what: str, server: JupyterServer | None = None) -> None:
    """Fails the test naming what did not happen, with everything the page reported so far."""
    text = f"{what}\n{journal.report()}"
    if server is not None:
        text += f"\nserver log ends:\n{server.log_tail(20)}"
    pytest.fail(text, pytrace=False)


def check(journal: Journal, ok, what: str) -> None:
    """An assertion whose failure message also lists what the page reported (console, errors, requests)."""
    if not ok:
        fail(journal, what)


def wait_for(journal: Journal, condition, what, timeout_s: float, server=None, page=None):
    """Polls `condition()` (truthy: done) every 0.2 s; after `timeout_s` fails with `what`, a text or a
    function giving one (called then, so it can say what the page shows at that moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result, last_error = condition(), None
        except PlaywrightError as error:  # e.g. an element not rendered yet
            result, last_error = None, error
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error.message.splitlines()[0]})" if last_error else ""
            fail(journal, f"{what() if callable(what) else what}: not within {timeout_s:.0f} s{detail}", server)
        if page is not None:
            page.wait_for_timeout(200)  # lets Playwright deliver the page's events meanwhile
        else:
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Reading the widget
# ---------------------------------------------------------------------------------------------

# fetch() reads a blob: URL (how ipywidgets 8 shows an Image's bytes) as well as a data: URL.
FETCH_BYTES = "async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"

# Records every text the status line shows from now on, so a redraw whose text changed is seen
# even when a later redraw happens to print the same number of milliseconds as the first.
WATCH_TEXT = """el => {
  window.__latentlabStatus = [];
  new MutationObserver(() => window.__latentlabStatus.push(el.textContent))
    .observe(el, {childList: true, characterData: true, subtree: true});
}"""


def pixels(image_locator) -> np.ndarray:
    data = bytes(image_locator.evaluate(FETCH_BYTES))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def settle(journal, server, notebook, page, image_locator) -> None:
    """Waits until the kernel is idle and the image has stopped changing (twice in a row, 0.3 s apart):
    several key presses mean several redraws, and the last one is the one to look at."""
    seen = []

    def quiet():
        kernel = server.kernel(notebook) or {}
        seen.append((kernel.get("execution_state"), image_locator.get_attribute("src")))
        page.wait_for_timeout(300)
        return len(seen) >= 2 and seen[-1] == seen[-2] and seen[-1][0] == "idle"

    wait_for(journal, quiet, "the kernel going idle with the decoded image no longer changing", REDRAW_S, server)


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_live_sliders_redraw_in_the_browser(frontend, server, browser, tmp_path):
    notebook = "live.ipynb"
    journal = Journal()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    try:
        page = context.new_page()
        journal.watch(context, page)

        # --- open the notebook, wait for its kernel
        page.goto(f"{server.url}/{FRONTENDS[frontend]['page'].format(name=notebook)}?token={server.token}",
                  timeout=PAGE_LOAD_S * 1000)
        cell = page.locator(".jp-Notebook .jp-CodeCell").first
        editor = cell.locator(".cm-content")
        wait_for(journal, lambda: editor.is_visible(), f"the notebook's code cell showing in {frontend}",
                 PAGE_LOAD_S, server, page)
        journal.step("waiting for the kernel")
        # A cell run before the frontend has its kernel is silently dropped (the prompt stays
        # "[ ]"), so wait until the server sees the page's websocket on an idle kernel.
        wait_for(journal, lambda: (k := server.kernel(notebook)) and k["connections"] >= 1
                 and k["execution_state"] == "idle",
                 "the notebook's kernel starting and the page connecting to it", KERNEL_READY_S, server, page)

        # --- run the cell as a reader would: focus it, Ctrl+Enter (run, stay on the cell; Shift+Enter
        # would add a second cell at the end in both frontends)
        journal.step("running the cell")
        editor.click()
        page.keyboard.press("Control+Enter")
        prompt = cell.locator(".jp-InputPrompt")
        wait_for(journal, lambda: prompt.inner_text().strip() != "[ ]:",
                 "the cell starting to run after Ctrl+Enter (its prompt is still [ ])", REDRAW_S, server, page)
        widget = cell.locator(".jp-OutputArea-output .widget-vbox").first  # the outermost box: live.widget
        sliders = widget.locator(".widget-slider")
        images = widget.locator("img.widget-image")  # input, then decoded
        status = widget.locator(".widget-html-content", has_text="redraw")

        def rendered():
            return sliders.count() == 2 and images.count() == 2 and status.count() == 1 and \
                all((images.nth(i).get_attribute("src") or "").startswith(("blob:", "data:")) for i in (0, 1))

        def output_text():
            try:
                return cell.locator(".jp-OutputArea").inner_text(timeout=1000)[-2000:]
            except PlaywrightError:
                return ""

        # a cell that raised will never show the widget: say so at once, with its traceback
        outcome = wait_for(journal, lambda: "raised" if "Traceback (most recent call last)" in output_text()
                           else rendered(),
                           lambda: f"the LiveSliders widget (2 sliders, 2 images with a src, a 'redraw' status) "
                                   f"rendering in {frontend}; prompt {prompt.inner_text().strip()!r}, cell output:\n"
                                   f"{output_text()}",
                           WIDGET_RENDER_S, server, page)
        if outcome == "raised":
            fail(journal, f"the cell raised in {frontend} instead of showing the widget:\n{output_text()}", server)
        input_view, decoded_view = images.nth(0), images.nth(1)
        handle = sliders.first.locator(".noUi-handle")
        readout = sliders.first.locator(".widget-readout")
        settle(journal, server, notebook, page, decoded_view)
        first_readout, first_src = readout.inner_text(), decoded_view.get_attribute("src")
        first_decoded, first_input = pixels(decoded_view), pixels(input_view)
        first_status = status.inner_text()
        check(journal, re.fullmatch(r"redraw \d+(\.\d+)? ms", first_status),
              f"the status line reads {first_status!r}, not 'redraw N ms'")
        check(journal, first_decoded.shape == first_input.shape == (DISPLAY_SIZE, DISPLAY_SIZE, 3),
              f"the images are {first_decoded.shape} and {first_input.shape}, not {DISPLAY_SIZE} px RGB")

        # --- move the first slider with the keyboard: three steps right, then End (its maximum),
        # so there are several redraws and a known final value
        journal.step("moving the first slider")
        status.evaluate(WATCH_TEXT)
        top = f"{float(handle.get_attribute('aria-valuemax')):.2f}"
        check(journal, first_readout != top, f"the slider starts at its maximum ({top}): moving right would do nothing")
        handle.focus()
        for key in ("ArrowRight", "ArrowRight", "ArrowRight", "End"):
            page.keyboard.press(key)
        wait_for(journal, lambda: readout.inner_text() == top,
                 lambda: f"the first slider's readout reaching its maximum {top} after ArrowRight x3, End "
                         f"(it reads {readout.inner_text()!r})", REDRAW_S, server, page)
        wait_for(journal, lambda: decoded_view.get_attribute("src") != first_src,
                 "the decoded image's src changing after the slider moved (the kernel did not redraw)",
                 REDRAW_S, server, page)
        settle(journal, server, notebook, page, decoded_view)
        moved = pixels(decoded_view)
        check(journal, not np.array_equal(moved, first_decoded),
              "the decoded image has a new src but the same pixels after the slider moved to its maximum")
        statuses = page.evaluate("window.__latentlabStatus")
        check(journal, statuses and all(re.fullmatch(r"redraw \d+(\.\d+)? ms", s) for s in statuses),
              f"the status line did not show a new 'redraw N ms' after the move (texts seen: {statuses})")
        shot = tmp_path / f"live-sliders-{frontend}.png"
        widget.screenshot(path=shot)
        if os.environ.get("LATENTLAB_SCREENSHOTS"):
            keep = Path(os.environ["LATENTLAB_SCREENSHOTS"])
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, keep / shot.name)

        # --- reset: the readout back to its starting value, the decoded image back to the first picture
        journal.step("clicking reset")
        moved_src = decoded_view.get_attribute("src")
        widget.get_by_role("button", name="reset").click()
        wait_for(journal, lambda: readout.inner_text() == first_readout,
                 lambda: f"the first slider's readout returning to {first_readout} after reset "
                         f"(it reads {readout.inner_text()!r})", REDRAW_S, server, page)
        wait_for(journal, lambda: decoded_view.get_attribute("src") != moved_src,
                 "the decoded image being redrawn after reset", REDRAW_S, server, page)
        settle(journal, server, notebook, page, decoded_view)
        after_reset = pixels(decoded_view)
        check(journal, np.array_equal(after_reset, first_decoded),
              "after reset the decoded image is not the first picture: "
              f"{int((after_reset != first_decoded).any(axis=-1).sum())} of {DISPLAY_SIZE ** 2} pixels differ")

        # --- another input image
        journal.step("choosing another input image")
        picker = widget.locator(".widget-dropdown select")
        input_src = input_view.get_attribute("src")
        picker.select_option(index=1)
        wait_for(journal, lambda: input_view.get_attribute("src") != input_src,
                 "the input image changing after choosing the second entry of 'input image'", REDRAW_S, server, page)
        settle(journal, server, notebook, page, decoded_view)
        check(journal, not np.array_equal(pixels(input_view), first_input),
              "the input image has a new src but the same pixels after choosing another image")
        journal.step("done")

        # --- the page's own health, over the whole session
        known = KNOWN_START_UP_ERRORS.get(frontend, [])
        unexplained = [(phase, message) for phase, message, stack in journal.page_errors
                       if not (phase in ("loading the page", "waiting for the kernel")
                               and any(message == text and where in stack for text, where in known))]
        if unexplained or journal.console_errors or journal.blocked:
            fail(journal, f"{frontend}: the page reported problems (unexplained page errors: {unexplained})")
    finally:
        context.close()
        # seen with `pytest -s`: how long each step took, and what the page reported even when it passed
        print(f"\n{frontend} timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in journal.timings.items()))
        print(journal.report())
