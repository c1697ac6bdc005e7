"""tools/check_book.py can fail: small sites generated here, each with one fault, are caught.

A good site (launch notes, typeset math, images from a file and a data URI, a working slider,
links to pages and fragments) passes; each bad variant fails on the page and for the reason
planted. They run the real checker in headless Chromium, one browser for the whole module.
"""

import base64
import importlib.util
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import check_book
import pytest

CHROMIUM = check_book.find_chromium()
if CHROMIUM is None:
    pytest.skip("Chromium is not installed (/usr/bin/chromium missing): the browser check of the "
                "book cannot run; `sudo apt-get install chromium` or `make check-book` installs it",
                allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402  (after the skip, on purpose)


def _mathjax_dir():
    """MathJax 3 as the book vendors it (sphinx-mathjax-offline), or None without the book extra."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    return path if (path / "tex-chtml.js").is_file() else None


MATHJAX = _mathjax_dir()
needs_mathjax = pytest.mark.skipif(MATHJAX is None, reason="sphinx-mathjax-offline (book extra) "
                                   "is not installed: no MathJax to typeset with")


# ---------------------------------------------------------------------------------------------
# Building fixture sites
# ---------------------------------------------------------------------------------------------

def png(r: int, g: int, b: int, size: int = 4, *, height: int | None = None, dpi: float | None = None,
        padding: int = 0) -> bytes:
    """A valid PNG of one colour, size x height pixels, without any imaging library; ``dpi`` writes a
    pHYs chunk (as Matplotlib does), ``padding`` a text chunk of that many bytes (a heavy file)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    height = size if height is None else height
    rows = b"".join(b"\x00" + bytes((r, g, b)) * size for _ in range(height))
    extra = b""
    if dpi is not None:
        per_metre = round(dpi / 0.0254)
        extra += chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1))
    if padding:
        extra += chunk(b"tEXt", b"Comment\x00" + b"x" * padding)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, height, 8, 2, 0, 0, 0))
            + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def data_uri(r, g, b, **kwargs) -> str:
    return "data:image/png;base64," + base64.b64encode(png(r, g, b, **kwargs)).decode()


NOTE = '<div class="latentlab-launch-note">Run this chapter: make book</div>'
MATHJAX_TAG = '<script defer src="../_static/mathjax/tex-chtml.js"></script>'


def slider(handler: str = "img.src = frames[inputs.map(i => i.value).join(',')];",
           inputs: int = 2) -> str:
    """The markup the book's sliders use: frames as data URIs in a JSON blob, inline JS."""
    frames = {f"{i},{j}": data_uri(40 * i, 100 * j, 200) for i in range(3) for j in range(2)}
    frames_json = "{" + ", ".join(f'"{k}": "{v}"' for k, v in frames.items()) + "}"
    ranges = "".join(
        f'<label>z{k + 1} <input class="latentlab-slider-input" type="range" name="z{k + 1}" '
        f'min="0" max="{2 if k == 0 else 1}" step="1" value="0"></label>' for k in range(inputs))
    return f"""
<div class="latentlab-slider" id="demo-slider">
  <img class="latentlab-slider-image" src="{frames['0,0']}" alt="decoded image">
  {ranges}
  <script type="application/json">{frames_json}</script>
  <script>
  (function () {{
    const root = document.currentScript.parentElement;
    const frames = JSON.parse(root.querySelector('script[type="application/json"]').textContent);
    const img = root.querySelector('img.latentlab-slider-image');
    const inputs = [...root.querySelectorAll('input.latentlab-slider-input')];
    root.oninput = () => {{ {handler} }};
  }})();
  </script>
</div>"""


def html(body: str, head: str = "") -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>t</title>{head}'
            f'</head><body id="top"><main>{body}</main></body></html>')


GOOD_PAGES = {
    "book/intro": html(
        NOTE
        + '<p>An inline <span class="math notranslate nohighlight">\\(\\log p(x) \\ge \\mathcal{L}\\)</span>'
        + ' and a display:</p><div class="math notranslate nohighlight">\\[\\begin{align} a &amp;= b'
        + ' \\\\ c &amp;= d \\end{align}\\]</div>'
        + '<img src="../_images/figure.png" alt="a figure file">'
        + f'<img src="{data_uri(0, 128, 0)}" alt="an inline output">'
        + '<p><a href="sliders.html">sliders</a>, <a href="bibliography.html#refs">refs</a>,'
        + ' <a href="#top">top</a>, <a href="../index.html">home</a>,'
        + ' <a href="https://arxiv.org/abs/1312.6114">paper</a>, <a href="mailto:x@y.z">mail</a></p>',
        head=MATHJAX_TAG),
    "book/sliders": html(NOTE + slider()),
    "book/bibliography": html('<h1 id="refs">Bibliography</h1><p>(no launch note needed)</p>'),
}


def make_site(root: Path, pages: dict[str, str]) -> Path:
    site = root / "html"
    (site / "_images").mkdir(parents=True)
    (site / "_images" / "figure.png").write_bytes(png(200, 30, 30))
    (site / "_images" / "heavy.png").write_bytes(png(200, 30, 30, padding=4_100_000))
    (site / "index.html").write_text(html('<a href="book/intro.html">start</a>'))
    if MATHJAX is not None:
        (site / "_static").mkdir()
        (site / "_static" / "mathjax").symlink_to(MATHJAX, target_is_directory=True)
    for name, text in pages.items():
        (site / f"{name}.html").parent.mkdir(parents=True, exist_ok=True)
        (site / f"{name}.html").write_text(text)
    return site


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = check_book.launch_browser(pw, CHROMIUM)
        yield chromium
        chromium.close()


def run(browser, tmp_path, pages, check=None, screenshots=False, **kwargs):
    """Builds the site from `pages` and checks the pages named in `check` (default: all)."""
    site = make_site(tmp_path, pages)
    return check_book.check_book(site, check or list(pages),
                                 tmp_path / "shots" if screenshots else None,
                                 browser=browser, **kwargs)


def problems_of(book, page):
    (report,) = [r for r in book.pages if r.page == page]
    return report.problems


# ---------------------------------------------------------------------------------------------
# The good site passes
# ---------------------------------------------------------------------------------------------

@needs_mathjax
def test_a_good_site_passes_and_gets_screenshots(browser, tmp_path):
    book = run(browser, tmp_path, GOOD_PAGES, screenshots=True)
    assert book.ok, [(r.page, r.problems) for r in book.pages] + book.problems
    intro, sliders, _ = book.pages
    assert "2 math (typeset)" in intro.facts and "2 img (1 data URI)" in intro.facts
    assert intro.external_links == ["https://arxiv.org/abs/1312.6114"]
    assert sliders.sliders == 1
    for page in GOOD_PAGES:
        shot = tmp_path / "shots" / f"{page}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">I", shot.read_bytes()[16:20])[0] == 1280  # IHDR width


# ---------------------------------------------------------------------------------------------
# Each fault is caught, on its page
# ---------------------------------------------------------------------------------------------

BAD_INTRO = {
    "console error": (html(NOTE + '<script>console.error("boom from the page")</script>'),
                      "console error: boom from the page"),
    "uncaught exception": (html(NOTE + '<script>throw new Error("kaput")</script>'),
                           "uncaught error: Error: kaput"),
    "request off-site": (html(NOTE, head='<script src="https://cdn.example.org/lib.js"></script>'),
                         "request leaves localhost: https://cdn.example.org/lib.js"),
    "missing image file": (html(NOTE + '<img src="../_images/nothere.png">'),
                           "image did not load: ../_images/nothere.png"),
    "broken data URI image": (html(NOTE + '<img src="data:image/png;base64,iVBORw0KGgoAAAA">'),
                              "image did not load: data:image/png"),
    "link to a missing page": (html(NOTE + '<a href="nowhere.html">x</a>'),
                               "broken link 'nowhere.html': no such file"),
    "link to a missing fragment": (html(NOTE + '<a href="bibliography.html#nope">x</a>'),
                                   "broken link 'bibliography.html#nope': no id 'nope'"),
    "link out of the site": (html(NOTE + '<a href="../../README.md">x</a>'),
                             "broken link '../../README.md': no such file"),
    "slider whose image does not change": (html(NOTE + slider(handler="/* forgot */")),
                                           "slider demo-slider: z1: moving it from 0 to 2 did not change the image"),
    "slider with a broken frame": (html(NOTE + slider(handler="img.src = 'data:image/png;base64,AAAA';")),
                                   "did not load"),
    "slider without inputs": (html(NOTE + slider(inputs=0)),
                              "slider demo-slider: has no input.latentlab-slider-input[type=range]"),
    "no launch note": (html("<p>no note</p>"), "no launch note (.latentlab-launch-note)"),
    "hidden launch note": (html('<div class="latentlab-launch-note" style="display:none">x</div>'),
                           "launch note (.latentlab-launch-note) is hidden"),
    "raw dollar TeX": (html(NOTE + "<p>the bound $\\log p(x) \\ge \\mathcal{L}$ holds</p>"),
                       "text(s) with raw TeX"),
    "math MathJax never saw": (html(NOTE + '<p><span class="math">\\(x^2\\)</span></p>'),
                               "1 of 1 math elements not typeset by MathJax; MathJax absent"),
    "page over 4 MB": (html(NOTE + "<!--" + "x" * 4_100_000 + "-->"), "HTML file is 4.1 MB"),
    "images making the page over 4 MB": (html(NOTE + '<img src="../_images/heavy.png">'),
                                         "the page weighs 4.1 MB (HTML 0.0 MB, 1 image file(s) 4.1 MB)"),
    # what a reader reads
    "a table that did not render": (html(NOTE + "<p>| model | MSE | |---|---| | VAC | 0.0118 |</p>"),
                                    "a Markdown table shows as a paragraph of raw pipes"),
    "a download in a stored output": (
        html(NOTE + '<div class="cell_output"><pre>Downloading: "https://example.org/w.pth" to /root/.cache</pre></div>'),
        'a stored output shows "Downloading:"'),
    "a traceback in a stored output": (
        html(NOTE + '<div class="cell_output"><pre>Traceback (most recent call last):\n  File "x.py"</pre></div>'),
        'a stored output shows "Traceback"'),
    "a network error in a stored output": (
        html(NOTE + '<div class="output stream"><pre>FID 0.2 [fallback: URLError: no network]</pre></div>'),
        'a stored output shows "URLError"'),
    "a code line behind a scroll bar": (
        html(NOTE + '<div class="highlight" style="overflow-x:auto"><pre style="white-space:pre">print("'
             + "x" * 400 + '")</pre></div>'),
        "overflows its column: div.highlight is"),
    "a table wider than the column": (
        html(NOTE + '<table><tr><td style="min-width:3000px">wide</td></tr></table>'),
        "overflows its column: table sticks"),
    # images that are not sharp
    "a figure squeezed to a quarter of its width": (
        html(NOTE + f'<img src="{data_uri(9, 9, 9, size=1600, height=2, dpi=144)}" style="width:400px">'),
        "is 1600 px wide but shown at 400 px (1/4.0)"),
    "a small figure stretched": (html(NOTE + f'<img src="{data_uri(9, 9, 9, size=40)}" style="width:200px">'),
                                 "is stretched from 40 px to 200 px"),
    "a figure stored at 60 dpi": (html(NOTE + f'<img src="{data_uri(9, 9, 9, size=40, dpi=60)}">'),
                                  "was stored at 60 dpi, below 100"),
}


@pytest.mark.parametrize("fault", list(BAD_INTRO))
def test_each_fault_is_caught(browser, tmp_path, fault):
    page, expected = BAD_INTRO[fault]
    # only the faulty page is opened (the good ones pass above); the others are there as targets
    book = run(browser, tmp_path, {**GOOD_PAGES, "book/intro": page}, check=["book/intro"],
               require_slider=False)
    assert not book.ok
    problems = problems_of(book, "book/intro")
    assert any(expected in p for p in problems), problems


def test_sharp_figures_wrapped_code_and_rendered_tables_pass(browser, tmp_path):
    """The cures of the faults above pass: a 144 dpi figure at 1/1.5 of its width, a pixel-art image
    stretched with pixelated rendering, a long code line that wraps, a real table, outputs without noise."""
    page = html(NOTE
                + f'<img src="{data_uri(9, 9, 9, size=1080, height=2, dpi=144)}" style="width:720px">'
                + f'<img src="{data_uri(9, 9, 9, size=32)}" style="width:128px;image-rendering:pixelated">'
                + '<div class="highlight" style="overflow-x:auto"><pre style="white-space:pre-wrap;'
                + 'overflow-wrap:anywhere">print("' + "x" * 400 + '")</pre></div>'
                + '<div class="cell_output"><table><tr><th>model</th><th>MSE</th></tr>'
                + '<tr><td>VAC</td><td>0.0118</td></tr></table><pre>FID 0.22 on judge features (fallback)</pre></div>'
                + "<p>Pipes in prose | are fine | as long as there is no separator row.</p>")
    book = run(browser, tmp_path, {**GOOD_PAGES, "book/intro": page}, check=["book/intro"], require_slider=False)
    assert problems_of(book, "book/intro") == []
    assert "figures at 144-144 dpi" in book.pages[0].facts


def test_image_dpi_reads_png_and_jpeg_headers():
    assert check_book.image_dpi(png(1, 2, 3, dpi=144)) == pytest.approx(144, abs=0.1)
    assert check_book.image_dpi(png(1, 2, 3)) is None  # no pHYs chunk: nothing declared
    jfif = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01"
    assert check_book.image_dpi(jfif + b"\x01\x00\x90\x00\x90\x00\x00") == 144        # dots per inch
    assert check_book.image_dpi(jfif + b"\x02\x00\x3b\x00\x3b\x00\x00") == pytest.approx(149.86)  # per cm
    assert check_book.image_dpi(jfif + b"\x00\x00\x01\x00\x01\x00\x00") is None       # aspect ratio only
    assert check_book.image_dpi(b"GIF89a") is None


@needs_mathjax
def test_tex_that_mathjax_cannot_read_is_caught(browser, tmp_path):
    page = html(NOTE + '<p><span class="math">\\(\\frac{1}{2} + \\nosuchmacro\\)</span></p>',
                head=MATHJAX_TAG)
    book = run(browser, tmp_path, {**GOOD_PAGES, "book/intro": page}, check=["book/intro"])
    assert any("MathJax error" in p and "nosuchmacro" in p for p in problems_of(book, "book/intro"))


def test_a_page_missing_from_the_build_is_caught(browser, tmp_path):
    site = make_site(tmp_path, GOOD_PAGES)
    book = check_book.check_book(site, ["book/ghost"], None, browser=browser)
    assert any("does not exist" in p for p in problems_of(book, "book/ghost"))


def test_a_book_without_any_slider_fails(browser, tmp_path):
    pages = {**GOOD_PAGES, "book/sliders": html(NOTE + "<p>sliders coming</p>")}
    book = run(browser, tmp_path, pages, check=["book/sliders", "book/bibliography"])
    assert problems_of(book, "book/sliders") == []
    assert not book.ok and "no page has a slider" in book.problems[0]


def test_the_bibliography_alone_needs_no_launch_note(browser, tmp_path):
    pages = {**GOOD_PAGES, "book/faces": html("<p>no note</p>")}
    book = run(browser, tmp_path, pages, check=["book/bibliography", "book/faces"],
               require_slider=False)
    assert problems_of(book, "book/bibliography") == []
    assert problems_of(book, "book/faces") == ["no launch note (.latentlab-launch-note)"]


# ---------------------------------------------------------------------------------------------
# The command line: exit status and a report that names the page and the problem
# ---------------------------------------------------------------------------------------------

@needs_mathjax
def test_command_line_exit_status_and_report(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                   "  - file: book/sliders\n  - file: book/bibliography.md\n")
    script = Path(check_book.__file__)
    good = make_site(tmp_path / "good", GOOD_PAGES)
    ok = subprocess.run([sys.executable, script, "--html", good, "--toc", toc,
                         "--screenshots", tmp_path / "shots", "--chromium", CHROMIUM],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "All 3 pages passed." in ok.stdout and (tmp_path / "shots/book/sliders.png").is_file()

    bad = make_site(tmp_path / "bad", {**GOOD_PAGES, "book/sliders": html(slider(handler=""))})
    fail = subprocess.run([sys.executable, script, "--html", bad, "--toc", toc,
                           "--screenshots", tmp_path / "shots2", "--chromium", CHROMIUM],
                          capture_output=True, text=True, timeout=300)
    assert fail.returncode == 1, fail.stdout + fail.stderr
    assert "FAIL book/sliders" in fail.stdout
    assert "no launch note" in fail.stdout and "did not change the image" in fail.stdout


def test_command_line_without_a_built_book_says_so(tmp_path):
    result = subprocess.run([sys.executable, check_book.__file__, "--html", tmp_path / "nothing"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "make book" in result.stderr
