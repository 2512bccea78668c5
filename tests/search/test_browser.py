"""End to end in headless Chromium (Playwright driving Debian's /usr/bin/chromium): open the
page, pick an indexed image, drag a box with the mouse, see the ranked hits, click a hit.

Set SEARCH_PAGE_SCREENSHOT=path to save a screenshot of the page with results (docs/search_page.png)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from search_fixtures import ColourEmbedder, draw_scene
from personsearch.search.build import build_index
from personsearch.search.server import SearchApp, make_server
from personsearch.search.store import GalleryStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

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
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    store.close()


def test_pick_image_draw_box_see_results(live_server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) not installed")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(live_server)
            page.wait_for_selector(".thumb[title^='a.png']")
            assert "6 images" in page.inner_text("#info")
            page.click(".thumb[title^='a.png']")
            page.wait_for_function("document.getElementById('query-canvas').width === 480")
            canvas = page.locator("#query-canvas").bounding_box()
            scale = canvas["width"] / 96  # a.png is 96x64, drawn 480x320
            # the red person of a.png is the rectangle (5, 5)-(20, 50)
            page.mouse.move(canvas["x"] + 4 * scale, canvas["y"] + 4 * scale)
            page.mouse.down()
            page.mouse.move(canvas["x"] + 12 * scale, canvas["y"] + 30 * scale, steps=5)
            page.mouse.move(canvas["x"] + 21 * scale, canvas["y"] + 51 * scale, steps=5)
            page.mouse.up()
            page.wait_for_selector(".hit")
            page.wait_for_function("document.getElementById('status').textContent.endsWith('hits')")
            captions = page.locator(".hit div").all_inner_texts()
            assert len(captions) >= 3
            top_images = {caption.split()[-1] for caption in captions[:3]}
            assert top_images == {"b.png", "street0.png", "street1.png"}  # the three other red persons
            assert all("a.png" not in caption for caption in captions)  # query image left out
            shot = os.environ.get("SEARCH_PAGE_SCREENSHOT")
            if shot:
                page.wait_for_timeout(300)
                page.screenshot(path=shot, full_page=True)
            # click the top hit: it becomes the query, the results are recomputed from it
            page.locator(".hit").first.click()
            page.wait_for_function("document.querySelector('.hit div') && !document.querySelector('.hit div').textContent.includes('" + captions[0].split()[-1] + "')")
            new_captions = page.locator(".hit div").all_inner_texts()
            assert new_captions[0].split()[-1] in {"a.png", "b.png", "street0.png", "street1.png"}
            assert errors == []
        finally:
            browser.close()
