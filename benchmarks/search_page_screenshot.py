"""The README's screenshot of the search page, with a model trained on the synthetic data.

    .venv/bin/python benchmarks/search_page_screenshot.py CHECKPOINT [--data out/synth] [--frames 40]

Copies the first ``--frames`` synthetic test frames into ``out/screenshot/images``, builds an
index with ``personsearch index build``, serves it on 127.0.0.1, and in headless Chromium
(Playwright, Debian's /usr/bin/chromium) picks the first query's frame, draws its query box
with the mouse and waits for the ranked hits; writes ``docs/search_page.png`` and prints how
many of the top-5 hits show the query person (from the dataset's annotations).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(argv: list[str] | None = None) -> int:
    from personsearch.cli.main import main as cli
    from personsearch.data import load_split
    from personsearch.search.build import load_embedder
    from personsearch.search.server import SearchApp, make_server
    from personsearch.search.store import GalleryStore

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=str(REPO / "out" / "synth"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--out", default=str(REPO / "out" / "screenshot"))
    parser.add_argument("--png", default=str(REPO / "docs" / "search_page.png"))
    args = parser.parse_args(argv)

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    images = out / "images"
    images.mkdir(parents=True)
    queries = load_split("prw", args.data, "query")
    gallery = load_split("prw", args.data, "gallery")
    query = queries[0]
    chosen = [query.image_name] + [r.image_name for r in gallery
                                   if query.person_ids[0] in r.person_ids and r.image_name != query.image_name]
    chosen += [r.image_name for r in gallery if r.image_name not in chosen]
    chosen = chosen[: args.frames]
    for name in chosen:
        shutil.copy(Path(args.data) / "frames" / name, images / name)
    index = out / "index"
    if cli(["index", "build", args.checkpoint, str(images), "--out", str(index), "--quiet"]) != 0:
        return 1
    store = GalleryStore.open(index)
    embedder = load_embedder(args.checkpoint, store.settings.min_size, store.settings.max_size)
    server = make_server(SearchApp(store, embedder), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    from playwright.sync_api import sync_playwright

    x1, y1, x2, y2 = (float(v) for v in query.boxes[0])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.goto(url)
        # waits on the state app.js reports on <body> (see static/app.js), never on timing
        page.wait_for_selector("body[data-gallery='ready']", state="attached")
        thumb = page.locator(f".thumb[title^='{query.image_name}']")
        image_id = thumb.get_attribute("data-image-id")
        thumb.click()
        page.wait_for_selector(f"body[data-query='ready'][data-query-source='image:{image_id}']", state="attached")
        canvas = page.locator("#query-canvas").bounding_box()
        scale = canvas["width"] / query.width
        page.mouse.move(canvas["x"] + x1 * scale, canvas["y"] + y1 * scale)
        page.mouse.down()
        page.mouse.move(canvas["x"] + x2 * scale, canvas["y"] + y2 * scale, steps=8)
        page.mouse.up()
        page.wait_for_selector("body[data-searches='1'][data-search='done']", state="attached")
        captions = page.locator(".hit div").all_inner_texts()
        page.screenshot(path=args.png, full_page=True)
        browser.close()
    server.shutdown()
    store.close()
    with_person = {r.image_name for r in gallery if query.person_ids[0] in r.person_ids}
    top5 = [caption.split()[-1] for caption in captions[:5]]
    print(json.dumps({"screenshot": args.png, "query": query.image_name, "indexed_frames": len(chosen),
                      "top5": top5, "top5_frames_with_query_person": sum(n in with_person for n in top5)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
