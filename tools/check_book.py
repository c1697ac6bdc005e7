#!/usr/bin/env python3
"""Opens the built book in headless Chromium and checks every page listed in _toc.yml.

    python tools/check_book.py [--html _build/html] [--screenshots _build/screenshots]

For each page (the root `book/intro` and every chapter) it checks that

1. the page loads with no console error, no uncaught exception, no failed or 4xx/5xx request,
   and no request to anything but the local server (the book must work offline);
2. math is typeset: every `.math` element Sphinx wrote holds MathJax output (`mjx-container`),
   MathJax reported no TeX error, and no raw `$...$` / `\\(...\\)` TeX is left in the text;
3. every `<img>` loaded (`complete && naturalWidth > 0`), data URIs included;
4. every static slider (`div.latentlab-slider`) has its image and range inputs, and moving each
   input changes the image (the whole book must hold at least one slider);
5. a launch note (`.latentlab-launch-note`) is shown, on every page but the bibliography and the implementation notes;
6. every link inside the book reaches an existing file and, with a `#fragment`, an existing id
   (external links are listed, not fetched);
7. the page (its HTML file and the image files it shows) is under 4 MB;
8. what a reader reads is readable: no paragraph holding a Markdown table's raw pipe rows (a
   table that did not render), no stored output showing a download attempt or a traceback
   (`Downloading:`, `Traceback`, `URLError`), no text, code, table or figure that overflows its
   column (cut off, or hidden behind a horizontal scroll bar);
9. images are sharp: none shown at less than 1/MAX_IMAGE_SHRINK of its own width (its text would
   be too small to read), none stretched beyond its own size without `image-rendering: pixelated`
   (blurry), and none whose file says it was stored at fewer than MIN_IMAGE_DPI dots per inch;

and it saves a screenshot of each page under `<screenshots>/<page>.png`. It prints a report per
page and exits with 1 when anything failed (2 when it could not run at all).

The name does not start with `test_` on purpose: pytest does not collect it.
`tests/test_check_book.py` proves, on small generated sites, that each check can fail.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]

MAX_PAGE_BYTES = 4_000_000          # "under 4 MB": a page this big is slow to open offline
MAX_IMAGE_SHRINK = 2.5              # a figure shown at under 1/2.5 of its width has unreadable text
MAX_IMAGE_STRETCH = 1.25            # stretched further (without pixelated rendering) it is blurry
MIN_IMAGE_DPI = 100                 # figures stored below this are blurry on high-density screens
NOISE_IN_OUTPUTS = ("Downloading:", "Traceback", "URLError")  # what a stored output must not show
LAUNCH_NOTE_EXEMPT = {"book/bibliography", "book/implementation_notes"}  # reference pages: nothing to launch
VIEWPORT = {"width": 1280, "height": 900}
SCREENSHOT_MAX_HEIGHT = 8000        # long chapters are clipped: the top of a page is what we look at
LOAD_TIMEOUT_MS = 30_000
SETTLE_TIMEOUT_MS = 20_000          # MathJax typesetting, images decoding

# Headless Chromium, told not to phone home: without the background-networking flags Chromium
# tries to reach Google services at start, which a closed network refuses, and the refusals show
# up as spurious errors. Playwright starts it with a fresh temporary --user-data-dir of its own
# (it refuses one in `args`) and deletes it afterwards.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

INSTALL_HINT = (
    "Chromium is needed: on Debian/Ubuntu `sudo apt-get install --no-install-recommends chromium` "
    "(`make check-book` does this when it runs as root), or pass --chromium /path/to/chrome."
)


# ---------------------------------------------------------------------------------------------
# Which pages: the root and every chapter of _toc.yml
# ---------------------------------------------------------------------------------------------

def toc_pages(toc_path: Path) -> list[str]:
    """Page names (`book/intro`, ...) in book order: root, then chapters (and parts/sections)."""
    import yaml  # only needed here; the test extra has it

    toc = yaml.safe_load(Path(toc_path).read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    # _toc.yml may name a file with or without its suffix; the HTML is always <name>.html
    return [os.path.splitext(p)[0] if p.endswith((".md", ".ipynb", ".rst")) else p for p in pages]


# ---------------------------------------------------------------------------------------------
# Static side: ids a fragment may point at, read from the HTML files themselves
# ---------------------------------------------------------------------------------------------

class _AnchorCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name == "id" or (name == "name" and tag == "a")):
                self.anchors.add(value)


@functools.lru_cache(maxsize=None)
def anchors_in(html_file: Path) -> frozenset[str]:
    parser = _AnchorCollector()
    parser.feed(html_file.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.anchors)


# ---------------------------------------------------------------------------------------------
# A local web server: pages are opened over http, as a reader's browser would, not file://
# ---------------------------------------------------------------------------------------------

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the report says what matters; no access log
        pass


class LocalSite:
    """Serves a directory on 127.0.0.1 at a free port, in a background thread."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# Browser side: JavaScript evaluated in each page
# ---------------------------------------------------------------------------------------------

# Waits until MathJax (if the page loaded it) has typeset the page, then until every image has
# either loaded or failed. Deferred and async scripts have run by the `load` event, so a page
# whose MathJax did not load has no `MathJax.startup` here and nothing is waited for.
SETTLE_JS = """
async (timeoutMs) => {
  const timeout = new Promise(resolve => setTimeout(() => resolve('timeout'), timeoutMs));
  let mathjax = 'absent';
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    mathjax = await Promise.race([MathJax.startup.promise.then(() => 'done', e => 'failed: ' + e), timeout]);
  }
  // lazy images load only when scrolled to; load them all, the check is that they *can* load
  const images = [...document.images];
  images.forEach(img => { if (img.loading === 'lazy') img.loading = 'eager'; });
  await Promise.race([Promise.all(images.map(img => (img.complete ? null : new Promise(resolve => {
    img.addEventListener('load', resolve, {once: true});
    img.addEventListener('error', resolve, {once: true});
  })))), timeout]);
  return mathjax;
}
"""

# Everything that can be read off the page once it has settled.
INSPECT_JS = r"""
() => {
  const NOISE = __NOISE__;
  const short = s => (s.length > 90 ? s.slice(0, 87) + '...' : s);
  // math: Sphinx writes span.math / div.math holding \( \) or \[ \] TeX; MathJax puts an
  // mjx-container inside each one it typesets
  const maths = [...document.querySelectorAll('.math')];
  const untypeset = maths.filter(m => !m.querySelector('mjx-container'))
                         .map(m => short(m.textContent.trim()));
  // TeX MathJax could not read: a syntax error becomes <merror>, an unknown macro red text
  const mathErrors = [];
  const typeset = (window.MathJax && MathJax.startup && MathJax.startup.document
                   && MathJax.startup.toMML) ? MathJax.startup.document.math : [];
  for (const item of typeset) {
    const mml = MathJax.startup.toMML(item.root);
    const err = /<merror[^>]*data-mjx-error="([^"]*)"/.exec(mml);
    if (err || /<merror|mathcolor="red"/.test(mml)) {
      mathErrors.push((err ? err[1] : 'unknown macro') + ' in ' + short(item.math));
    }
  }
  if (!typeset.length) {
    document.querySelectorAll('mjx-merror').forEach(e =>
        mathErrors.push(short(e.getAttribute('data-mjx-error') || e.textContent)));
  }
  // raw TeX elsewhere in the prose: delimiters MyST did not turn into math (code, outputs in
  // <pre> and the .math elements counted above are skipped)
  const skip = 'script, style, pre, code, textarea, mjx-container, .math, .highlight, kbd, samp';
  const texPatterns = [/\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{/, /\$[^$\n]*[\\^_{][^$\n]*\$/];
  const rawTex = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement || node.parentElement.closest(skip)) continue;
    const text = node.textContent;
    if (texPatterns.some(p => p.test(text))) rawTex.push(short(text.trim()));
  }
  const shown = e => e.getClientRects().length > 0;   // not display:none, not in a closed <details>
  const column = document.querySelector('article.bd-article') || document.querySelector('main')
                 || document.body;
  const columnRight = column.getBoundingClientRect().right;
  const images = [...document.images].map(img => {
    const rect = img.getBoundingClientRect();
    return {
      src: img.getAttribute('src') || '',
      url: img.currentSrc || img.src,
      ok: img.complete && img.naturalWidth > 0,
      inColumn: column.contains(img) && shown(img),
      naturalWidth: img.naturalWidth,
      shownWidth: rect.width,
      pixelated: /pixelated|crisp-edges/.test(getComputedStyle(img).imageRendering),
    };
  });
  // a Markdown table that did not render: its separator row |---|---| left in a paragraph
  const rawTables = [...column.querySelectorAll('p')]
      .filter(p => /\|\s*:?-{3,}:?\s*\|/.test(p.textContent)).map(p => short(p.textContent.trim()));
  // stored outputs a reader should not see
  const noise = [];
  for (const out of column.querySelectorAll('.cell_output, .output')) {
    for (const word of NOISE) {
      const at = out.textContent.indexOf(word);
      if (at >= 0) noise.push({word, text: short(out.textContent.slice(at).trim())});
    }
  }
  // text, code, tables and figures wider than the column: cut off, or hidden behind a scroll bar
  const overflow = [];
  const describe = e => e.tagName.toLowerCase() + (e.className && typeof e.className === 'string'
      ? '.' + e.className.trim().split(/\s+/).slice(0, 2).join('.') : '');
  const candidates = column.querySelectorAll(
      'pre, table, .highlight, .pst-scrollable-table-container, .cell_output, .output, p, li, img, '
      + 'figure, mjx-container, div.latentlab-slider, div.latentlab-launch-note');
  for (const e of candidates) {
    if (!shown(e)) continue;
    const style = getComputedStyle(e);
    const scrolls = ['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX);
    const right = e.getBoundingClientRect().right;
    if (scrolls && e.scrollWidth > e.clientWidth + 2) {
      overflow.push(`${describe(e)} is ${e.scrollWidth} px wide in ${e.clientWidth} px ("${short(e.textContent.trim())}")`);
    } else if (right > columnRight + 2) {
      overflow.push(`${describe(e)} sticks ${Math.round(right - columnRight)} px out of the column ("${short(e.textContent.trim())}")`);
    }
  }
  const note = document.querySelector('.latentlab-launch-note');
  const noteShown = !!note && note.getClientRects().length > 0
                    && getComputedStyle(note).visibility !== 'hidden';
  const links = [...document.querySelectorAll('a[href]')].map(a => ({
    href: a.getAttribute('href'), url: a.href, text: short(a.textContent.trim()),
  }));
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id)
      .concat([...document.querySelectorAll('a[name]')].map(a => a.name));
  return {maths: maths.length, untypeset, mathErrors, rawTex: rawTex.slice(0, 5),
          rawTexCount: rawTex.length, images, note: !!note, noteShown, links, ids,
          rawTables, noise, overflow, height: document.documentElement.scrollHeight};
}
""".replace("__NOISE__", json.dumps(list(NOISE_IN_OUTPUTS)))

# Moves every input of every slider to another value, as a reader dragging it would (an `input`
# event that bubbles), checks that the image changed and loaded, and puts it back.
SLIDERS_JS = """
async () => {
  const short = s => (s.length > 60 ? s.slice(0, 57) + '...' : s);
  const frame = () => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const loaded = img => (img.complete ? Promise.resolve(img.naturalWidth > 0) : new Promise(resolve => {
    img.addEventListener('load', () => resolve(img.naturalWidth > 0), {once: true});
    img.addEventListener('error', () => resolve(false), {once: true});
    setTimeout(() => resolve(img.complete && img.naturalWidth > 0), 5000);
  }));
  const move = async (input, value) => {
    input.value = value;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    await frame();  // a handler may defer its work to the next frame
  };
  const results = [];
  for (const [i, slider] of [...document.querySelectorAll('div.latentlab-slider')].entries()) {
    const name = slider.id || slider.getAttribute('aria-label') || `#${i + 1}`;
    const problems = [];
    const img = slider.querySelector('img.latentlab-slider-image');
    const inputs = [...slider.querySelectorAll('input.latentlab-slider-input[type=range]')];
    if (!img) problems.push('has no img.latentlab-slider-image');
    if (!inputs.length) problems.push('has no input.latentlab-slider-input[type=range]');
    if (img) {
      for (const [j, input] of inputs.entries()) {
        const label = input.name || input.getAttribute('aria-label') || input.id || `input ${j + 1}`;
        const before = img.src, original = input.value;
        input.value = input.max;                       // another value: the maximum, or the
        if (input.value === original) input.value = input.min;   // minimum when it sits there
        const other = input.value;
        input.value = original;
        if (other === original) { problems.push(`${label}: the range has a single value`); continue; }
        await move(input, other);
        if (img.src === before) {
          problems.push(`${label}: moving it from ${original} to ${other} did not change the image`);
        } else if (!(await loaded(img))) {
          problems.push(`${label}: at ${other} the image (${short(img.getAttribute('src') || '')}) did not load`);
        }
        await move(input, original);
        if (img.src !== before) problems.push(`${label}: moving it back to ${original} did not restore the image`);
      }
    }
    results.push({name, inputs: inputs.length, problems});
  }
  return results;
}
"""


# ---------------------------------------------------------------------------------------------
# Images: their bytes, and the resolution their files declare
# ---------------------------------------------------------------------------------------------

def image_dpi(data: bytes) -> float | None:
    """Dots per inch a PNG (pHYs chunk) or JPEG (JFIF header) declares; None when it declares none."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        pos = 8
        while pos + 8 <= len(data):
            length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
            if kind == b"pHYs" and length == 9:
                per_unit, unit = int.from_bytes(data[pos + 8:pos + 12], "big"), data[pos + 16]
                return per_unit * 0.0254 if unit == 1 else None   # unit 1: pixels per metre
            if kind in (b"IDAT", b"IEND"):                          # pHYs comes before the pixels
                return None
            pos += 12 + length
        return None
    if data[:2] == b"\xff\xd8":
        at = data.find(b"JFIF\x00", 0, 64)
        if at > 0 and len(data) >= at + 10:
            units, density = data[at + 7], int.from_bytes(data[at + 8:at + 10], "big")
            return {1: density, 2: density * 2.54}.get(units)       # 0: an aspect ratio only
    return None


def image_bytes(url: str, origin: str, html_dir: Path) -> bytes | None:
    """The bytes behind an image URL of the page: a data URI, or a file of the served site."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        return base64.b64decode(payload) if header.endswith(";base64") else None
    if url.startswith(origin + "/"):
        path = html_dir / unquote(urlsplit(url).path).lstrip("/")
        return path.read_bytes() if path.is_file() else None
    return None


def _check_image(report: PageReport, img: dict, data: bytes | None) -> None:
    """Readable and sharp: not squeezed far below its width, not stretched blurry, stored at enough dpi."""
    name = _short(img["src"], 70)
    natural, shown = img["naturalWidth"], img["shownWidth"]
    if shown > 0 and natural > shown * MAX_IMAGE_SHRINK:
        report.problems.append(
            f"image {name} is {natural} px wide but shown at {shown:.0f} px (1/{natural / shown:.1f}): its "
            f"text and detail are too small to read; make the figure narrower (at most 1/{MAX_IMAGE_SHRINK})")
    if natural > 0 and shown > natural * MAX_IMAGE_STRETCH and not img["pixelated"]:
        report.problems.append(
            f"image {name} is stretched from {natural} px to {shown:.0f} px, which blurs it: store it "
            "larger, or draw its pixels as blocks (image-rendering: pixelated)")
    dpi = image_dpi(data) if data else None
    if dpi is not None and dpi < MIN_IMAGE_DPI - 0.5:
        report.problems.append(f"image {name} was stored at {dpi:.0f} dpi, below {MIN_IMAGE_DPI}: blurry "
                               "on a high-density screen (latentlab.chapters.plot.book_style sets the book's dpi)")


# ---------------------------------------------------------------------------------------------
# One page
# ---------------------------------------------------------------------------------------------

@dataclass
class PageReport:
    page: str
    size: int | None = None
    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)        # what was seen, for the report
    external_links: list[str] = field(default_factory=list)
    sliders: int = 0
    screenshot: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _short(text: str, n: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _check_links(report: PageReport, links: list[dict], page_ids: set[str], html_dir: Path,
                 page_file: Path, origin: str) -> None:
    """Internal links must reach a file under html_dir and, with a fragment, an id in it."""
    root = html_dir.resolve()
    broken: dict[str, str] = {}
    for link in links:
        href, url = link["href"], link["url"]
        scheme = urlsplit(url).scheme
        if scheme in ("mailto", "javascript", "tel", "data"):
            continue
        if scheme in ("http", "https") and not url.startswith(origin + "/"):
            if url not in report.external_links:
                report.external_links.append(url)
            continue
        if scheme != "http":          # file:, ftp:, ... cannot work for a reader of the site
            broken[href] = f"a {scheme}: URL"
            continue
        parts = urlsplit(url)
        path = unquote(parts.path)
        if path.endswith("/"):
            path += "index.html"
        target = (root / path.lstrip("/")).resolve()
        if root not in target.parents or not target.is_file():
            broken[href] = "no such file"
            continue
        fragment = unquote(parts.fragment)
        if not fragment or target.suffix != ".html":
            continue
        known = anchors_in(target)
        if target == page_file.resolve():
            known = known | page_ids      # ids made by the page's scripts count on the page itself
        if fragment not in known:
            broken[href] = f"no id {fragment!r} in {target.relative_to(root)}"
    for href, why in broken.items():
        report.problems.append(f"broken link {href!r}: {why}")


def check_page(browser, origin: str, html_dir: Path, page: str,
               screenshot_dir: Path | None) -> PageReport:
    started = time.monotonic()
    report = PageReport(page)
    html_file = html_dir / f"{page}.html"
    if not html_file.is_file():
        report.problems.append(f"{html_file} does not exist (is the page in the build?)")
        return report

    # 7. size of the HTML file (the image files it shows are added once the page is open)
    report.size = html_file.stat().st_size
    if report.size >= MAX_PAGE_BYTES:
        report.problems.append(f"HTML file is {report.size / 1e6:.1f} MB, the limit is "
                               f"{MAX_PAGE_BYTES / 1e6:.0f} MB")

    # 1. everything the page logs or requests. Requests are intercepted: the local server's are
    # let through, any other is recorded and aborted, so the check never waits on the network.
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    offsite: list[str] = []
    reported_urls: set[str] = set()   # so one bad request is not reported again as a console error
    errors: list[str] = []

    def route(r):
        if r.request.url.startswith(origin + "/"):
            r.continue_()
        else:
            offsite.append(r.request.url)
            reported_urls.add(r.request.url)
            r.abort("blockedbyclient")

    def on_console(msg):
        if msg.type != "error":
            return
        where = msg.location.get("url", "") if msg.location else ""
        if where in reported_urls and msg.text.startswith("Failed to load resource"):
            return
        line = msg.location.get("lineNumber") if msg.location else None
        at = f" ({where.replace(origin, '')}:{line})" if where else ""
        errors.append(f"console error: {_short(msg.text, 200)}{at}")

    def on_response(resp):
        if resp.status >= 400:
            reported_urls.add(resp.url)
            errors.append(f"HTTP {resp.status} for {resp.url.replace(origin, '')}")

    def on_failed(req):
        if req.url not in reported_urls:
            reported_urls.add(req.url)
            errors.append(f"request failed: {_short(req.url)} ({req.failure})")

    context.route("**/*", route)
    page_ = context.new_page()
    pending: set = set()
    page_.on("request", lambda req: pending.add(req))
    page_.on("requestfinished", lambda req: pending.discard(req))
    page_.on("requestfailed", lambda req: pending.discard(req))
    page_.on("console", on_console)
    page_.on("pageerror", lambda exc: errors.append(
        f"uncaught error: {getattr(exc, 'name', None) or 'Error'}: {_short(exc.message, 200)}"))
    page_.on("response", on_response)
    page_.on("requestfailed", on_failed)
    page_.on("websocket", lambda ws: offsite.append(ws.url))
    try:
        page_.goto(f"{origin}/{page}.html", wait_until="load", timeout=LOAD_TIMEOUT_MS)
        mathjax = page_.evaluate(SETTLE_JS, SETTLE_TIMEOUT_MS)
        seen = page_.evaluate(INSPECT_JS)
        sliders = page_.evaluate(SLIDERS_JS)
        # requests a script started late (fonts, thebe) finish, or fail, before the verdict
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            page_.wait_for_timeout(50)

        # 2. math
        if seen["maths"]:
            report.facts.append(f"{seen['maths']} math ({mathjax if mathjax != 'done' else 'typeset'})")
        if seen["untypeset"]:
            why = "" if mathjax == "done" else f"; MathJax {mathjax}"
            report.problems.append(
                f"{len(seen['untypeset'])} of {seen['maths']} math elements not typeset by MathJax"
                f'{why}, e.g. "{seen["untypeset"][0]}"')
        for err in seen["mathErrors"]:
            report.problems.append(f"MathJax error: {err}")
        if seen["rawTexCount"]:
            report.problems.append(f"{seen['rawTexCount']} text(s) with raw TeX, e.g. "
                                   f'"{seen["rawTex"][0]}"')

        # 3. images
        images = seen["images"]
        data_uris = sum(img["src"].startswith("data:") for img in images)
        report.facts.append(f"{len(images)} img ({data_uris} data URI)" if data_uris
                            else f"{len(images)} img")
        image_files: dict[str, int] = {}   # local image files this page makes the reader fetch
        dpis = []
        for img in images:
            if not img["ok"]:
                report.problems.append(f"image did not load: {_short(img['src'], 80)}")
                continue
            data = image_bytes(img["url"], origin, html_dir)
            if data is not None and not img["url"].startswith("data:"):
                image_files[img["url"]] = len(data)
            if img["inColumn"]:
                _check_image(report, img, data)
                dpi = image_dpi(data) if data else None
                if dpi is not None:
                    dpis.append(dpi)
        if dpis:
            report.facts.append(f"figures at {min(dpis):.0f}-{max(dpis):.0f} dpi")

        # 7. the page's weight: its HTML and the image files it shows
        html_bytes = report.size
        report.size += sum(image_files.values())
        if report.size >= MAX_PAGE_BYTES > html_bytes:
            report.problems.append(
                f"the page weighs {report.size / 1e6:.1f} MB (HTML {html_bytes / 1e6:.1f} MB, "
                f"{len(image_files)} image file(s) {(report.size - html_bytes) / 1e6:.1f} MB), the limit is "
                f"{MAX_PAGE_BYTES / 1e6:.0f} MB: compress its figures (JPEG for photographs)")

        # 8. what a reader reads
        for text in seen["rawTables"]:
            report.problems.append(f'a Markdown table shows as a paragraph of raw pipes: "{text}"')
        for item in seen["noise"]:
            report.problems.append(f'a stored output shows "{item["word"]}": "{item["text"]}"')
        for text in seen["overflow"][:10]:
            report.problems.append(f"overflows its column: {text}")
        if len(seen["overflow"]) > 10:
            report.problems.append(f"... and {len(seen['overflow']) - 10} more elements overflow their column")

        # 4. sliders
        report.sliders = len(sliders)
        if sliders:
            report.facts.append(f"{len(sliders)} slider(s), "
                                f"{sum(s['inputs'] for s in sliders)} input(s)")
        for slider in sliders:
            for problem in slider["problems"]:
                report.problems.append(f"slider {slider['name']}: {problem}")

        # 5. launch note
        if page not in LAUNCH_NOTE_EXEMPT:
            if not seen["note"]:
                report.problems.append("no launch note (.latentlab-launch-note)")
            elif not seen["noteShown"]:
                report.problems.append("launch note (.latentlab-launch-note) is hidden")

        # 6. links
        _check_links(report, seen["links"], set(seen["ids"]), html_dir, html_file, origin)

        # 8. screenshot: full page width 1280, clipped to SCREENSHOT_MAX_HEIGHT
        if screenshot_dir is not None:
            shot = screenshot_dir / f"{page}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            height = max(1, min(seen["height"], SCREENSHOT_MAX_HEIGHT))
            page_.screenshot(path=str(shot), full_page=True,
                             clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
            report.screenshot = shot
    except Exception as exc:  # a page that does not load or times out is a failure, not a crash
        report.problems.append(f"could not check the page: {_short(exc, 300)}")
    finally:
        context.close()

    # 1. what was logged while all of the above ran
    for url in dict.fromkeys(offsite):
        report.problems.append(f"request leaves localhost: {_short(url)}")
    report.problems.extend(dict.fromkeys(errors))
    report.seconds = time.monotonic() - started
    return report


# ---------------------------------------------------------------------------------------------
# The whole book
# ---------------------------------------------------------------------------------------------

@dataclass
class BookReport:
    pages: list[PageReport]
    problems: list[str]        # book-wide ones (no slider anywhere)
    browser: str
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.ok for p in self.pages)


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def launch_browser(playwright, chromium: str):
    return playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)


def check_book(html_dir: Path, pages: list[str], screenshot_dir: Path | None = None, *,
               browser=None, chromium: str | None = None, require_slider: bool = True) -> BookReport:
    """Checks `pages` of the site in `html_dir`. Pass a running Playwright `browser` to reuse it
    (the tests do), or the path of a Chromium to start one."""
    started = time.monotonic()
    html_dir = Path(html_dir)
    anchors_in.cache_clear()
    with LocalSite(html_dir) as site:
        if browser is None:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                own = launch_browser(pw, chromium or find_chromium())
                try:
                    reports = [check_page(own, site.origin, html_dir, p, screenshot_dir) for p in pages]
                    version = own.version
                finally:
                    own.close()
        else:
            reports = [check_page(browser, site.origin, html_dir, p, screenshot_dir) for p in pages]
            version = browser.version
    problems = []
    if require_slider and not any(r.sliders for r in reports):
        problems.append("no page has a slider (div.latentlab-slider); the Latent sliders chapter "
                        "should have at least one")
    return BookReport(reports, problems, f"Chromium {version}", time.monotonic() - started)


def print_report(book: BookReport, html_dir: Path, out=sys.stdout) -> None:
    width = max(len(r.page) for r in book.pages) if book.pages else 10
    print(f"Checked {len(book.pages)} pages of {html_dir} in headless {book.browser} "
          f"({book.seconds:.1f} s)\n", file=out)
    for r in book.pages:
        size = f"{r.size / 1e3:7.0f} kB" if r.size is not None else "      - kB"
        status = "ok  " if r.ok else "FAIL"
        facts = ", ".join(r.facts + ([f"{len(r.external_links)} external link(s)"]
                                     if r.external_links else []))
        print(f"{status} {r.page:<{width}} {size}  {r.seconds:4.1f} s  {facts}", file=out)
        for problem in r.problems:
            print(f"       - {problem}", file=out)
        if r.screenshot is not None:
            print(f"       screenshot: {r.screenshot}", file=out)
    externals = {}
    for r in book.pages:
        for url in r.external_links:
            externals.setdefault(url, []).append(r.page)
    if externals:
        print("\nExternal links (listed, not fetched):", file=out)
        for url, where in sorted(externals.items()):
            print(f"  {url}  ({', '.join(where)})", file=out)
    failed = [r for r in book.pages if not r.ok]
    print("", file=out)
    for problem in book.problems:
        print(f"FAIL book: {problem}", file=out)
    if book.ok:
        print(f"All {len(book.pages)} pages passed.", file=out)
    else:
        n = sum(len(r.problems) for r in failed) + len(book.problems)
        print(f"{n} problem(s): {len(failed)} of {len(book.pages)} pages failed"
              + (f" ({', '.join(r.page for r in failed)})" if failed else "")
              + (", and the book-wide check" if book.problems else "") + ".", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html",
                        help="the built book (default: _build/html)")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots",
                        help="where <page>.png screenshots go (default: _build/screenshots)")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml",
                        help="which pages to check (default: _toc.yml)")
    parser.add_argument("--chromium", default=None,
                        help="Chromium executable (default: $CHROMIUM, chromium on PATH, /usr/bin/chromium)")
    args = parser.parse_args(argv)

    if not (args.html / "index.html").is_file():
        print(f"check_book: {args.html}/index.html missing; build the book first (make book)",
              file=sys.stderr)
        return 2
    chromium = args.chromium or find_chromium()
    if not chromium or not Path(chromium).is_file():
        print(f"check_book: no Chromium found. {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("check_book: the Python package playwright is missing (pip install -e '.[test]'); "
              "its own browser download is not needed", file=sys.stderr)
        return 2

    pages = toc_pages(args.toc)
    book = check_book(args.html, pages, args.screenshots, chromium=chromium)
    print_report(book, args.html)
    return 0 if book.ok else 1


if __name__ == "__main__":
    sys.exit(main())
