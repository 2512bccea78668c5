"""End to end in headless Chromium (Playwright driving Debian's /usr/bin/chromium): open the
page, pick an indexed image, drag a box with the mouse, see the ranked hits, click a hit; and
upload an image and search in it.

Deterministic: every wait is on the page's own state, which app.js reports as data attributes
on <body> (``data-info``, ``data-gallery``, ``data-query`` + ``data-query-source``,
``data-search`` + ``data-searches``), never on a delay. The page runs under its real
Content-Security-Policy (waits are selectors, not evaluated JavaScript), and any console
error (a CSP violation included) fails the test.

Set SEARCH_PAGE_SCREENSHOT=path to save a screenshot of the page with results (docs/search_page.png)."""

from __future__ import annotations

import io
import os
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image

from search_fixtures import COLOURS, ColourEmbedder, draw_scene
from personsearch.search.build import build_index
from personsearch.search.server import SearchApp, make_server
from personsearch.search.store import GalleryStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000  # a failure guard only: every wait ends as soon as the page reports its state

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
                       reason=f"{CHROMIUM} not installed (apt-get install chromium); the browser test needs it"),
]


@pytest.fixture
def live_server(tmp_path, scene_dir):
    # a few more scenes so the page has something to show
    extra = [("red", (8, 6, 24, 58)), ("cyan", (60, 4, 76, 56))], [("blue", (44, 8, 60, 60)), ("red", (70, 10, 86, 60))]
    for i, persons in enumerate(extra):
        draw_scene(scene_dir / f"street{i}.png", persons)
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    store = GalleryStore.open(tmp_path / "idx")
    httpd = make_server(SearchApp(store, ColourEmbedder()), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", tmp_path
    httpd.shutdown()
    httpd.server_close()
    store.close()


@pytest.fixture
def page(live_server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) not installed")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.set_default_timeout(WAIT_MS)
            problems = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: problems.append(f"console: {message.text}") if message.type == "error" else None)
            page.problems = problems
            page.goto(live_server[0])
            page.wait_for_selector("body[data-info='ready'][data-gallery='ready']", state="attached")
            yield page
        finally:
            browser.close()


def wait_for_search(page, count: int) -> None:
    """Until search number ``count`` (the latest) has finished and its hits are drawn."""
    page.wait_for_selector(f"body[data-searches='{count}'][data-search='done'], "
                           f"body[data-searches='{count}'][data-search='error']", state="attached")
    assert page.get_attribute("body", "data-search") == "done", page.inner_text("#status")


def wait_for_query(page, source: str) -> None:
    """Until the query image ``source`` ("image:ID" or "upload:...") is shown, or its loading failed."""
    page.wait_for_selector(f"body[data-query='ready'][data-query-source{'^' if source.endswith(':') else ''}='{source}'], "
                           "body[data-query='error']", state="attached")
    assert page.get_attribute("body", "data-query") == "ready", page.inner_text("#status")


def drag(page, image_width: int, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag on the query canvas from ``start`` to ``end`` (image pixels)."""
    canvas = page.locator("#query-canvas").bounding_box()
    scale = canvas["width"] / image_width
    page.mouse.move(canvas["x"] + start[0] * scale, canvas["y"] + start[1] * scale)
    page.mouse.down()
    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(canvas["x"] + middle[0] * scale, canvas["y"] + middle[1] * scale, steps=5)
    page.mouse.move(canvas["x"] + end[0] * scale, canvas["y"] + end[1] * scale, steps=5)
    page.mouse.up()


def test_pick_image_draw_box_see_results(page):
    assert "6 images" in page.inner_text("#info")
    thumb = page.locator(".thumb[title^='a.png']")
    image_id = thumb.get_attribute("data-image-id")
    thumb.click()
    wait_for_query(page, f"image:{image_id}")
    assert page.locator("#query-canvas").get_attribute("width") == "480"  # a.png is 96x64, drawn 480x320
    # the red person of a.png is the rectangle (5, 5)-(20, 50)
    drag(page, 96, (4, 4), (21, 51))
    wait_for_search(page, 1)
    captions = page.locator(".hit div").all_inner_texts()
    assert page.inner_text("#status") == f"{len(captions)} hits" and len(captions) >= 3
    top_images = {caption.split()[-1] for caption in captions[:3]}
    assert top_images == {"b.png", "street0.png", "street1.png"}  # the three other red persons
    assert all("a.png" not in caption for caption in captions)  # query image left out
    assert page.locator(".hit canvas").count() == len(captions)
    shot = os.environ.get("SEARCH_PAGE_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)
    # click the top hit: it becomes the query, the results are recomputed from its person
    first_image = captions[0].split()[-1]
    page.locator(".hit").first.click()
    wait_for_search(page, 2)
    assert page.get_attribute("body", "data-query") == "ready"
    new_captions = page.locator(".hit div").all_inner_texts()
    new_images = [caption.split()[-1] for caption in new_captions]
    assert first_image not in new_images  # the new query's own image is left out
    assert new_images[0] in {"a.png", "b.png", "street0.png", "street1.png"} - {first_image}  # another red person
    assert page.problems == []


def test_upload_then_draw_box(page, live_server):
    tmp_path = live_server[1]
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    page.set_input_files("#upload", str(not_image))  # sent as application/octet-stream, refused by the server
    page.wait_for_selector("body[data-query='error'][data-query-source='upload']", state="attached")
    assert "not a readable image" in page.inner_text("#status")
    page.problems.clear()  # the browser logs the 415 answer in its console
    image = Image.new("RGB", (960, 640), (128, 128, 128))
    image.paste(COLOURS["yellow"], (300, 50, 450, 500))  # downscaled on receipt to 96x64: (30, 5)-(45, 50)
    path = tmp_path / "my photo é.png"
    image.save(path)
    page.set_input_files("#upload", str(path))
    wait_for_query(page, "upload:")
    drag(page, 96, (29, 4), (46, 51))
    wait_for_search(page, 1)
    captions = page.locator(".hit div").all_inner_texts()
    assert captions[0].split()[-1] == "sub/c.png"  # the only yellow person
    assert page.problems == []
