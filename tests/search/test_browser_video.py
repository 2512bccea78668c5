"""The search page over an index with video frames, in headless Chromium: upload a photo of a
person, search with the whole photo / its largest person, see video hits with their time codes
and frames decoded from the video; and pick a frame and draw a box on it.

Deterministic like test_browser.py: every wait is on the state app.js reports on <body>
(``data-query``, ``data-search``, ``data-searches``, ``data-photo-box``) and each result card's
``data-video`` / ``data-time-code``, never on a delay."""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from personsearch.search.build import build_index
from personsearch.search.server import SearchApp, make_server
from personsearch.search.store import GalleryStore
from personsearch.search.video import Sampling
from search_fixtures import COLOURS, ColourEmbedder, walking_frames, write_video
from test_browser import drag, page, pytestmark, wait_for_query, wait_for_search  # noqa: F401 (fixture, marks)


@pytest.fixture
def live_server(tmp_path, scene_dir):
    """The page over scene_dir's images plus one video (cyan and blue walkers, 3 s at 4 fps)."""
    write_video(scene_dir / "cams" / "door.mov", walking_frames(12, ("cyan", "blue")), fps=4)
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False, sampling=Sampling(every_s=1.0))
    store = GalleryStore.open(tmp_path / "idx")
    httpd = make_server(SearchApp(store, ColourEmbedder()), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", tmp_path
    httpd.shutdown()
    httpd.server_close()
    store.close()


def test_photo_upload_finds_video_frames_with_time_codes(page, live_server):
    assert "4 images, 1 videos (3 frames)" in page.inner_text("#info")
    photo = Image.new("RGB", (96, 64), (128, 128, 128))
    photo.paste(COLOURS["cyan"], (40, 10, 56, 60))  # a photo with background: the largest detection is used
    path = live_server[1] / "cyan person.png"
    photo.save(path)
    assert page.locator("#photo-search").is_hidden()
    page.set_input_files("#upload", str(path))
    wait_for_query(page, "upload:")
    page.click("#photo-search")
    wait_for_search(page, 1)
    assert page.get_attribute("body", "data-photo-box") == "largest detection (score 0.90, 13% of the image)"
    cards = page.locator(".hit").all()
    on_video = [(card.get_attribute("data-video"), card.get_attribute("data-time-code")) for card in cards
                if card.get_attribute("data-video")]
    # the cyan walker is only in the video: its three frames, in time order (equal similarity, id order)
    assert on_video[:3] == [("cams/door.mov", "00:00:00.000"), ("cams/door.mov", "00:00:01.000"),
                            ("cams/door.mov", "00:00:02.000")]
    assert cards[0].inner_text().split()[-2:] == ["cams/door.mov", "00:00:00.000"]
    assert page.locator(".hit canvas").first.get_attribute("width") == "220"  # the frame was decoded and drawn
    assert page.problems == []


def test_pick_a_frame_and_draw_a_box(page):
    thumb = page.locator(".thumb[title^='cams/door.mov at 00:00:01.000']")
    image_id = thumb.get_attribute("data-image-id")
    thumb.click()
    wait_for_query(page, f"image:{image_id}")
    # at 1 s (frame 4) the blue walker (lane 1) is at x 5 + 16 + 30 = 51, y 8..53
    drag(page, 96, (50, 7), (66, 54))
    wait_for_search(page, 1)
    captions = page.locator(".hit div").all_inner_texts()
    assert captions[0].split()[-1] == "b.png"  # blue in b.png (lower id), then the other frames
    assert [c.split()[-1] for c in captions[1:3]] == ["00:00:00.000", "00:00:02.000"]
    assert all("00:00:01.000" not in caption for caption in captions)  # the query's own frame left out
    assert page.problems == []
