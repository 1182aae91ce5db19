"""The rendered book in a real browser: Debian's Chromium, headless, driven by selenium.

The HTML book that ``micro_run`` builds is served over http on 127.0.0.1 (a free port, a
background thread) and every page is opened in Chromium: it must load with HTTP 200, log no
SEVERE console message, and show all its images; the figures of the executed chapters must be
there, the sidebar of the index page must lead to every chapter of ``_toc.yml``, and the
"Reproducibility status" page must list every chapter. A screenshot of the index page is kept in
``_build/test-artifacts/index.png``.

Reading comfort, on every page at a desktop width (1400 px) and a phone width (400 px): the page
never scrolls sideways; no element sticks out of the article's column; at 1400 px no code, output
or table hides part of itself behind a horizontal scroll bar (at 400 px code and output blocks may
scroll inside their own box, as they are designed to); every image has at least as many pixels as
it is shown with. The References page lists at least 8 sources, and no file of the built HTML
names a placeholder repository or a launch service.

Nothing is downloaded: the browser and the driver are Debian's (``apt-get install chromium
chromium-driver``), passed to selenium by path so that selenium-manager never runs. Other paths can
be given with EEVE_CHROMIUM and EEVE_CHROMEDRIVER; where either program is missing, the tests skip.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "_build" / "test-artifacts"
INSTALL_HINT = "install Debian's packages: apt-get install chromium chromium-driver"
WAIT_S = 20

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",  # wide enough for the book theme to show its sidebar
]

# SEVERE console messages that are not the book's fault, and the only ones ignored:
# 1. A request to a third-party host (anything but the 127.0.0.1 server) that the closed network
#    blocks: "https://host/... - Failed to load resource: net::ERR_...". _config.yml is set up so
#    that the pages request nothing external, so this should not match; if it does, a warning
#    names the URL.
# 2. The 404 for /favicon.ico at the root of the server: Chromium asks for it on its own on the
#    first page of an origin (the redirecting index.html has no <link rel="icon">); no page of the
#    book refers to it.
EXTERNAL_BLOCKED = re.compile(r"^(?P<url>https?://(?!127\.0\.0\.1[:/])\S+) - Failed to load resource: net::ERR_\w+")


def _favicon_404(base: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(base)}/favicon\.ico - Failed to load resource: .*\b404\b")


# --------------------------------------------------------------------------------------------
# What the book should contain, from _toc.yml


def _toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                files += _toc_files(child)
    return files


def _strip_ext(path: str) -> str:
    return re.sub(r"\.(md|ipynb|html)$", "", path)


TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
TOC_ROOT = _strip_ext(TOC["root"])  # the page index.html redirects to
TOC_CHAPTERS = [_strip_ext(f) for f in _toc_files({"parts": TOC.get("parts", []), "chapters": TOC.get("chapters", [])})]
STATUS_PAGE = "book/status"
REFERENCES_PAGE = "book/references"
PAGES = ["index", *TOC_CHAPTERS] + ([] if STATUS_PAGE in TOC_CHAPTERS else [STATUS_PAGE])
WIDTHS = (1400, 400)  # a desktop window and a phone, in CSS pixels
# Strings no built file may contain: the old placeholder repository, Jupyter Book's default
# repository, and the launch services (the book has no launch buttons: no public repository).
PLACEHOLDERS = ("eeve-book/eeve-book", "executablebooks/jupyter-book", "mybinder.org", "colab.research.google.com")


def _notebook_chapters() -> list[str]:
    """The executed method chapters (numbered notebooks 00-05), in _toc.yml order: the ones with figures."""
    from eeve_lib.pipeline.runner import chapters_in_order

    return [f"book/{name}" for name in chapters_in_order() if name[:2].isdigit()]


# --------------------------------------------------------------------------------------------
# Fixtures


def _program(env: str, default: str) -> str | None:
    given = os.environ.get(env, default)
    path = given if os.sep in given else shutil.which(given)
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def chromium_paths():
    """Debian's chromium and chromedriver; skips (before the book is built) where either is missing."""
    paths = {}
    for env, default, what in [("EEVE_CHROMIUM", "/usr/bin/chromium", "chromium"),
                               ("EEVE_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")]:
        path = _program(env, default)
        if path is None:
            pytest.skip(f"{what} not found at {os.environ.get(env, default)} (set {env} to another path, or "
                        f"{INSTALL_HINT})")
        paths[what] = path
    return paths


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, no caching (each visit is a fresh 200), requests recorded instead of printed."""

    requests: list[tuple[str, int]]

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_request(self, code="-", size="-"):
        self.requests.append((urlsplit(self.path).path, int(getattr(code, "value", code))))

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture(scope="module")
def site(chromium_paths, micro_run):
    """The built book over http://127.0.0.1:<free port>; stopped at the end of the module."""
    html = Path(micro_run["index"]).parent
    requests: list[tuple[str, int]] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield {"base": f"http://127.0.0.1:{server.server_address[1]}", "requests": requests, "html": html}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium_paths, site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="eeve-chromium-", ignore_cleanup_errors=True) as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium_paths["chromium"]
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit driver path: selenium-manager is never asked to find or download anything.
        driver = webdriver.Chrome(service=Service(chromium_paths["chromedriver"]), options=options)
        try:
            driver.set_page_load_timeout(WAIT_S)
            yield driver
        finally:
            driver.quit()


# --------------------------------------------------------------------------------------------
# Helpers


def _wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition, message)


def _docname(url: str, base: str) -> str:
    """'http://127.0.0.1:N/book/00_base_model.html#x' -> 'book/00_base_model'."""
    assert url.startswith(base + "/"), f"{url} is not on the book's server {base}"
    return _strip_ext(urlsplit(url).path.lstrip("/"))


def _open(driver, site, page: str) -> str:
    """Open a page ('index' or a docname) and wait for it to load, images included; return its docname."""
    base = site["base"]
    if page == "index":
        driver.get(f"{base}/index.html")
        # index.html is a <meta http-equiv="Refresh"> to the root page of _toc.yml.
        _wait(driver, lambda d: _docname(d.current_url, base) == TOC_ROOT,
              f"index.html did not lead to {TOC_ROOT}.html")
    else:
        driver.get(f"{base}/{page}.html")
    _wait(driver, lambda d: d.execute_script("return document.readyState") == "complete",
          f"{page} did not finish loading")
    _wait(driver, lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"),
          f"the images of {page} did not finish loading")
    return _docname(driver.current_url, base)


def _http_status(driver) -> int:
    return driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0")


def _console_errors(driver, site) -> list[str]:
    """SEVERE console messages since the last call, less the two kinds explained above."""
    errors = []
    favicon = _favicon_404(site["base"])
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        message = entry["message"]
        if favicon.match(message):
            continue
        external = EXTERNAL_BLOCKED.match(message)
        if external:
            warnings.warn(f"ignored a blocked request to a third-party host: {external['url']}")
            continue
        errors.append(message)
    return errors


def _broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.currentSrc || i.src || i.outerHTML)")


def _shown_figures(driver) -> int:
    """Loaded, visible images in cell outputs and figures (not the theme's logos)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output img, figure img'))"
        ".filter(i => i.complete && i.naturalWidth > 0 && i.offsetWidth > 0 && i.offsetHeight > 0).length")


# Layout problems of the open page, as [{"what", "element", "detail"}]. ``scrolling_code_ok``:
# whether code and output blocks (pre, highlighted code, cell outputs, table wrappers) may scroll
# inside their own box (the phone width) or count as clipped (the desktop width).
LAYOUT_JS = r"""
const scrollingCodeOk = arguments[0];
const problems = [];
const describe = el => {
  let s = el.tagName.toLowerCase();
  if (el.id) s += '#' + el.id;
  const cls = (typeof el.className === 'string' ? el.className : '').trim().split(/\s+/).filter(c => c);
  if (cls.length) s += '.' + cls.slice(0, 3).join('.');
  const text = (el.innerText || '').trim().replace(/\s+/g, ' ').slice(0, 60);
  return text ? `${s} "${text}"` : s;
};
const doc = document.documentElement;
if (doc.scrollWidth > doc.clientWidth + 1) {
  problems.push({what: 'the page scrolls sideways', element: 'html',
                 detail: `${doc.scrollWidth} px of content in ${doc.clientWidth} px`});
}
const article = document.querySelector('article.bd-article') || document.querySelector('main');
if (!article) return problems;
const column = article.getBoundingClientRect();
const codeBox = el => el.matches(
  'pre, div.highlight, div.cell_output, div.output, div.cell_input, .pst-scrollable-table-container, ' +
  'div.table-wrapper, .MathJax, mjx-container, .math');
const scrolls = st => ['auto', 'scroll', 'hidden'].includes(st.overflowX);
const insideScroller = el => {
  for (let p = el.parentElement; p && p !== article; p = p.parentElement) {
    if (scrolls(getComputedStyle(p))) return true;
  }
  return false;
};
for (const el of article.querySelectorAll('*')) {
  const st = getComputedStyle(el);
  if (st.display === 'none' || st.visibility === 'hidden' || el.getClientRects().length === 0) continue;
  if (st.position === 'absolute' || st.position === 'fixed') continue;  // tooltips, copy buttons
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if (scrolls(st) && el.scrollWidth > el.clientWidth + 1 && !(scrollingCodeOk && codeBox(el))) {
    problems.push({what: 'hides part of itself behind a scroll bar', element: describe(el),
                   detail: `${el.scrollWidth} px of content in ${el.clientWidth} px`});
  }
  if (r.right > column.right + 1 && !insideScroller(el)) {
    problems.push({what: "sticks out of the article's column", element: describe(el),
                   detail: `right edge ${Math.round(r.right)} px, column ends at ${Math.round(column.right)} px`});
  }
}
return problems;
"""

# Images shown with more CSS pixels than they have: blurry (figures are PNGs at twice their size).
BLURRY_IMAGES_JS = """
return Array.from(document.images)
  .filter(i => i.complete && i.naturalWidth > 0 && i.getClientRects().length > 0)
  .filter(i => i.naturalWidth + 0.5 < i.getBoundingClientRect().width)
  .map(i => `${(i.currentSrc || i.src).split('/').pop()}: ${i.naturalWidth} px shown at ` +
            `${Math.round(i.getBoundingClientRect().width)} px`);
"""


def _layout_problems(driver, width: int) -> list[str]:
    found = driver.execute_script(LAYOUT_JS, width < 800)
    # One line per problem; an element inside one already listed adds nothing.
    return [f"{p['element']}: {p['what']} ({p['detail']})" for p in found]


@pytest.fixture
def window(browser):
    """Set the browser's width for one test; back to the default width after it."""
    def resize(width: int):
        browser.set_window_size(width, 1000)
        _wait(browser, lambda d: abs(d.execute_script("return window.innerWidth") - width) <= 20,
              f"the window did not resize to {width} px")
    yield resize
    resize(WIDTHS[0])


# --------------------------------------------------------------------------------------------
# Tests


def test_index_screenshot(browser, site):
    """The index page opens the book's root page; its screenshot is kept as the test artifact.

    The browser's first page, with an empty profile: the console is checked here too, since some
    scripts complain only on a first visit (before anything is in localStorage).
    """
    assert _open(browser, site, "index") == TOC_ROOT
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "index.png"
    assert browser.save_screenshot(str(shot)), "the screenshot could not be written"
    assert shot.stat().st_size > 1000
    served = [code for path, code in site["requests"] if path == "/index.html"]
    assert served and served[-1] == 200, f"index.html was served with {served}"
    assert _http_status(browser) == 200
    assert _console_errors(browser, site) == [], "index (first visit): console errors"


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_cleanly(browser, site, page):
    """HTTP 200, no SEVERE console message, every image loaded; figures on the executed chapters."""
    browser.get_log("browser")  # drop what earlier pages logged
    landed = _open(browser, site, page)
    assert landed == (TOC_ROOT if page == "index" else page)
    assert _http_status(browser) == 200, f"{page}: HTTP {_http_status(browser)}"
    assert _console_errors(browser, site) == [], f"{page}: console errors"
    assert _broken_images(browser) == [], f"{page}: images that did not load"
    if page in _notebook_chapters():
        assert _shown_figures(browser) >= 1, f"{page}: no figure shown"


def test_sidebar_reaches_every_chapter(browser, site):
    """Clicking the sidebar links of the index page, in turn, reaches every chapter of _toc.yml, in order."""
    from selenium.webdriver.common.by import By

    sidebar = "nav.bd-docs-nav a.reference.internal"
    _open(browser, site, "index")
    count = len(browser.find_elements(By.CSS_SELECTOR, sidebar))
    assert count > 0, "the index page has no sidebar links"
    reached = []
    for i in range(count):
        if i:
            _open(browser, site, "index")
        link = browser.find_elements(By.CSS_SELECTOR, sidebar)[i]
        target = urljoin(browser.current_url, link.get_attribute("href"))
        _wait(browser, lambda d: link.is_displayed() and link.is_enabled(), f"sidebar link {target} is not visible")
        link.click()
        _wait(browser, lambda d: d.current_url.split("#")[0] == target.split("#")[0],
              f"clicking the sidebar link to {target} did not open it")
        _wait(browser, lambda d: d.execute_script("return document.readyState") == "complete", f"{target} did not load")
        assert _http_status(browser) == 200, f"{target}: HTTP {_http_status(browser)}"
        reached.append(_docname(browser.current_url, site["base"]))
    chapters = [d for d in dict.fromkeys(reached) if d != TOC_ROOT]
    assert chapters == TOC_CHAPTERS


def test_status_page(browser, site):
    """The status page has its heading and one row per executed chapter, in order."""
    from selenium.webdriver.common.by import By

    _open(browser, site, STATUS_PAGE)
    # The page's own heading: the theme also has a print-only copy of it, hidden on screen.
    heading = browser.find_element(By.CSS_SELECTOR, "article.bd-article h1")
    assert heading.is_displayed()
    assert heading.text.replace("#", "").strip() == "Reproducibility status"
    rows = browser.find_elements(By.CSS_SELECTOR, "article.bd-article section#chapters table tbody tr")
    names = [row.find_element(By.CSS_SELECTOR, "td").text.strip() for row in rows]
    from eeve_lib.pipeline.runner import chapters_in_order

    assert names == chapters_in_order()


@pytest.mark.parametrize("page", PAGES)
def test_nothing_is_wider_than_its_column(browser, site, window, page):
    """At 1400 and 400 px: no sideways page scroll, nothing sticking out, nothing clipped (see LAYOUT_JS),
    and every image at least as wide, in pixels, as it is shown."""
    problems = []
    for width in WIDTHS:
        window(width)
        _open(browser, site, page)
        problems += [f"{width} px: {p}" for p in _layout_problems(browser, width)]
        problems += [f"{width} px: blurry image {i}" for i in browser.execute_script(BLURRY_IMAGES_JS)]
    if problems:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / f"{page.replace('/', '_')}-{WIDTHS[-1]}.png"))
    assert not problems, f"{page}:\n" + "\n".join(problems)


# Each figure: its width as shown, and the width the page gives it at full size (the PNG is drawn at
# twice that, "retina", so its natural width is the fallback when no width is set).
FIGURE_SIZES_JS = r"""
return Array.from(document.querySelectorAll('article figure img'))
  .filter(i => i.complete && i.naturalWidth > 0 && i.getClientRects().length > 0)
  .map(i => [(i.currentSrc || i.src).split('/').pop(), i.getBoundingClientRect().width,
             parseFloat(i.style.width) || i.naturalWidth / 2]);
"""
SMALLEST_TEXT_PX = 10


@pytest.mark.parametrize("page", _notebook_chapters() + ["book/results"])
def test_figure_text_is_readable_at_phone_width(browser, site, window, page):
    """At 400 px every figure's smallest text, scaled to the size the figure is shown at, is at least
    10 px: plots.MIN_FONT_PT at notebook.FIGURE_DPI, times the shown width over the full width."""
    from eeve_lib.book.notebook import FIGURE_DPI
    from eeve_lib.book.plots import MIN_FONT_PT

    window(400)
    _open(browser, site, page)
    sizes = browser.execute_script(FIGURE_SIZES_JS)
    assert sizes, f"{page}: no figure found"
    small = [f"{name}: {px:.1f} px" for name, shown, full in sizes
             if (px := MIN_FONT_PT / 72 * FIGURE_DPI * min(1.0, shown / full)) < SMALLEST_TEXT_PX]
    assert not small, f"{page}: figure text below {SMALLEST_TEXT_PX} px at 400 px:\n" + "\n".join(small)


def test_references_page(browser, site):
    """The bibliography renders, with at least 8 sources, and the introduction's citations link to it."""
    from selenium.webdriver.common.by import By

    assert REFERENCES_PAGE in TOC_CHAPTERS, "_toc.yml lists no References page"
    _open(browser, site, REFERENCES_PAGE)
    entries = browser.find_elements(By.CSS_SELECTOR, "article.bd-article .citation, article.bd-article dl.citation > dt")
    labels = {e.get_attribute("id") or e.text for e in entries}
    assert len(labels) >= 8, f"the References page lists {len(labels)} sources"
    text = browser.find_element(By.CSS_SELECTOR, "article.bd-article").text
    assert "efficient and effective vocabulary expansion" in text.lower()
    _open(browser, site, TOC_ROOT)
    cites = browser.find_elements(By.CSS_SELECTOR, "article.bd-article a[href*='references.html#']")
    assert cites, f"{TOC_ROOT} cites nothing from the References page"


def test_no_placeholder_repository_in_the_html(site):
    """No built file names a placeholder repository or a launch service (there is no public repository)."""
    found = []
    for path in sorted(Path(site["html"]).rglob("*")):
        if path.suffix not in (".html", ".js", ".json", ".txt", ".ipynb", ".md", ".css", ".xml"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(site['html'])}: {p}" for p in PLACEHOLDERS if p in text]
    assert not found, "placeholder URLs in the built book:\n" + "\n".join(found)
