"""The docs site in a real browser (Debian's chromium, headless) at 1280 x 900: every table
and code block can be read without being cut off, and nothing is fetched from another host.

The site is built with ``mkdocs build --strict`` into a temporary folder and served on
127.0.0.1; chromium resolves every other host name to nothing, so even a page that tried
would send no request off the machine, and its network log shows the attempt.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
WIDTH, HEIGHT = 1280, 900
# A page with the widest tables: the one the screenshot shows.
WIDE_PAGE = "memcache/options/"

_REPORT = re.compile(r'<script type="application/json" id="errpolicy-layout-report">(.*?)</script>')
# In HTML: the elements that make the browser fetch what they name.
_FETCHING = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?"
    r"\b(?:src|href|data|srcset)\s*=\s*[\"']?([^\"'\s>]+)",
    re.IGNORECASE,
)
# In CSS (files and <style> or style="..."): what @import and url() load.
_CSS_LOADS = re.compile(
    r"@import\s+(?:url\()?\s*[\"']?([^\"')\s;]+)|url\(\s*[\"']?([^\"')]+)", re.IGNORECASE
)


def _pages() -> list[str]:
    """The site path of every docs page (``docs/a/b.md`` is ``a/b/``, ``a/index.md`` is ``a/``)."""
    paths = []
    for source in sorted(DOCS.rglob("*.md")):
        relative = source.relative_to(DOCS)
        if relative.parts[0].startswith("_"):
            continue
        parts = relative.with_suffix("").parts
        if parts[-1] == "index":
            parts = parts[:-1]
        paths.append("".join(f"{part}/" for part in parts))
    return paths


def _off_host(reference: str) -> bool:
    """Whether a reference in a page or stylesheet names another host (data: URLs do not)."""
    reference = reference.strip()
    return bool(re.match(r"(?i)(https?:)?//", reference))


@pytest.fixture(scope="module")
def chromium() -> str:
    """The chromium binary; missing fails under CI=true, skips elsewhere."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is required under CI=true (apt-get install chromium)")
    pytest.skip("chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs site, built with ``mkdocs build --strict`` as ``make docs`` builds it."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert 0 == proc.returncode, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def measured_site(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the site whose pages carry tests/layout_report.js before ``</body>``."""
    copy = tmp_path_factory.mktemp("measured") / "site"
    shutil.copytree(site, copy)
    script = (Path(__file__).parent / "layout_report.js").read_text()
    for page in copy.rglob("index.html"):
        text = page.read_text()
        assert 1 == text.count("</body>"), page
        page.write_text(text.replace("</body>", f"<script>{script}</script></body>"))
    return copy


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """The browser's requests are not the test's output."""


@pytest.fixture(scope="module")
def served(measured_site: Path) -> Iterator[str]:
    """The measured site over HTTP on 127.0.0.1 (a free port); its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(measured_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _browse(chromium: str, profile: Path, url: str, *action: str) -> str:
    """Run headless chromium on ``url`` with ``action`` (``--dump-dom``, ``--screenshot=...``);
    its standard output. Every host but 127.0.0.1 resolves to nothing."""
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # runs as root in CI
            "--disable-gpu",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-features=AutofillServerCommunication",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--virtual-time-budget=10000",  # let the theme's scripts and the report's timer run
            *action,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == proc.returncode, proc.stderr[-3000:]
    return proc.stdout


def test_every_docs_page_is_checked() -> None:
    """The page list covers the nav's pages, the wide-table page among them."""
    pages = _pages()
    assert {"", "quickstart/", "memcache/", WIDE_PAGE, "how-to/configure/"} <= set(pages)


@pytest.mark.parametrize("page", _pages())
def test_tables_and_code_fit_the_page_at_1280px(
    chromium: str, served: str, tmp_path: Path, page: str
) -> None:
    """No table or code block of the page is cut off or needs a sideways scroll at 1280 px."""
    dom = _browse(chromium, tmp_path / "profile", served + page, "--dump-dom")
    found = _REPORT.search(dom)
    assert found is not None, "the layout report did not run: " + dom[-500:]
    report = json.loads(html.unescape(found.group(1)))
    assert WIDTH - 20 <= report["viewport"] <= WIDTH  # less a scroll bar, if any
    assert [] == report["problems"]


def test_a_page_requests_nothing_from_another_host(
    chromium: str, served: str, tmp_path: Path
) -> None:
    """Every request the page makes (chromium's network log) goes to the local server."""
    log = tmp_path / "net.json"
    page = served + WIDE_PAGE
    _browse(chromium, tmp_path / "profile", page, f"--log-net-log={log}", "--dump-dom")
    netlog = json.loads(log.read_text())
    start = netlog["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    origin = served.rstrip("/")
    # The page's requests: itself, and what it initiated (its HTML, CSS and scripts).
    # Chromium's own (updates, accounts, autofill) have no origin as initiator.
    requests = [e.get("params", {}) for e in netlog["events"] if e["type"] == start]
    urls = {
        r["url"]
        for r in requests
        if "url" in r and (r.get("initiator") == origin or r["url"] == page)
    }
    assert page in urls  # the log did see the page's requests
    assert any(url.endswith(".css") for url in urls)
    assert [] == sorted(url for url in urls if urlsplit(url).hostname != "127.0.0.1")


def test_no_page_or_stylesheet_loads_from_another_host(site: Path) -> None:
    """No <script>, <link>, <img>, @import or url() in the built site names another host."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            text = path.read_text()
            references = [m.group(1) for m in _FETCHING.finditer(text)]
            references += [a or b for a, b in _CSS_LOADS.findall(text)]
        elif path.suffix == ".css":
            references = [a or b for a, b in _CSS_LOADS.findall(path.read_text())]
        else:
            continue
        found += [f"{path.relative_to(site)}: {r}" for r in references if _off_host(r)]
    assert [] == found


def test_code_is_highlighted_when_the_site_is_built(site: Path) -> None:
    """Code arrives coloured (Pygments at build time), not left to a script from elsewhere."""
    page = (site / "tutorial" / "index.html").read_text()
    assert '<span class="kn">import</span>' in page  # a Python keyword, marked up


def test_a_screenshot_of_the_wide_table_page_shows_the_page(
    chromium: str, served: str, tmp_path: Path
) -> None:
    """chromium draws the wide-table page at 1280 x 900, not an empty window."""
    from matplotlib.image import imread

    shot = tmp_path / "wide-table.png"
    _browse(chromium, tmp_path / "profile", served + WIDE_PAGE, f"--screenshot={shot}")
    pixels = imread(shot)
    assert (HEIGHT, WIDTH) == pixels.shape[:2]
    # Text, code and the table's rules: a good share of the pixels are not background.
    background = (pixels[..., :3] > 0.97).all(axis=-1).mean()
    assert background < 0.9
    if os.environ.get("ERRPOLICY_SCREENSHOTS"):  # for a person to look at
        shutil.copy(shot, Path(os.environ["ERRPOLICY_SCREENSHOTS"]) / shot.name)
