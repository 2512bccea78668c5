"""The web server's API over an index with video frames (decoded from the video on demand) and
photo queries on uploads."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from personsearch.search.build import build_index
from personsearch.search.server import SearchApp, make_server
from personsearch.search.store import GalleryStore
from personsearch.search.video import Sampling
from search_fixtures import ColourEmbedder, scene_array, walking_frames, write_video
from test_server import post_json, request


@pytest.fixture
def video_server(tmp_path, scene_dir):
    frames = walking_frames(12, ("cyan", "blue"))
    write_video(scene_dir / "cams" / "door.mov", frames, fps=4)  # lossless: served frames are checkable
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False, sampling=Sampling(every_s=1.0))
    store = GalleryStore.open(tmp_path / "idx")
    httpd = make_server(SearchApp(store, ColourEmbedder()), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", store, frames
    httpd.shutdown()
    httpd.server_close()
    store.close()


def test_frames_are_listed_and_served_from_the_video(video_server):
    base, store, frames = video_server
    status, _, body = request(base + "/api/info")
    info = json.loads(body)
    assert status == 200 and (info["images"], info["videos"], info["video_frames"]) == (4, 1, 3)
    listed = json.loads(request(base + "/api/images")[2])["images"]
    on_video = [entry for entry in listed if "video" in entry]
    assert [(e["name"], e["time_code"], e["seconds"]) for e in on_video] == [
        ("cams/door.mov@00:00:00.000", "00:00:00.000", 0.0), ("cams/door.mov@00:00:01.000", "00:00:01.000", 1.0),
        ("cams/door.mov@00:00:02.000", "00:00:02.000", 2.0)]
    status, headers, body = request(base + f"/api/images/{on_video[1]['id']}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    served = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.int16)
    assert served.shape == (64, 96, 3)
    errors = [float(np.abs(served - frame).mean()) for frame in frames]
    assert int(np.argmin(errors)) == 4 and errors[4] < 6  # the frame at 1 s (4 fps: frame 4), JPEG-close
    status, _, body = request(base + f"/api/images/{on_video[1]['id']}?max=48")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (48, 32)
    persons = json.loads(request(base + f"/api/images/{on_video[1]['id']}/persons")[2])["persons"]
    assert len(persons) == 2


def test_box_and_photo_searches_show_video_time(video_server):
    base, store, _ = video_server
    frame_id = json.loads(request(base + "/api/images")[2])["images"][2]["id"]  # door.mov at 0 s
    status, result = post_json(base + "/api/search", {"image_id": frame_id, "box": [35, 8, 49, 53], "top": 3})
    assert status == 200, result
    # the blue walker: b.png's blue person and the other two frames; the query's own frame left out
    assert [(hit["image"], hit["video"], hit["time_code"]) for hit in result["hits"]] == [
        ("b.png", None, None), ("cams/door.mov@00:00:01.000", "cams/door.mov", "00:00:01.000"),
        ("cams/door.mov@00:00:02.000", "cams/door.mov", "00:00:02.000")]

    buffer = io.BytesIO()
    Image.fromarray(scene_array([("cyan", (20, 2, 80, 62))])).save(buffer, format="PNG")  # cyan, 59 % of the photo
    status, _, body = request(base + "/api/uploads", buffer.getvalue(), {"Content-Type": "image/png"})
    assert status == 201, body
    upload_id = json.loads(body)["upload_id"]
    status, result = post_json(base + "/api/search", {"photo_upload_ids": [upload_id], "top": 3, "weighting": "cosine"})
    assert status == 200, result
    assert result["query"]["photos"][0]["box_source"].startswith("whole image (the largest detection covers 59%")
    assert [hit["time_code"] for hit in result["hits"]] == ["00:00:00.000", "00:00:01.000", "00:00:02.000"]
    assert all(hit["cosine"] == pytest.approx(1.0, abs=1e-5) for hit in result["hits"])

    for bad in ({"photo_upload_ids": []}, {"photo_upload_ids": "abc"}, {"photo_upload_ids": [1]},
                {"photo_upload_ids": [upload_id], "photo_box": "middle"}):
        status, answer = post_json(base + "/api/search", bad)
        assert status == 400 and "photo" in answer["error"]
    status, answer = post_json(base + "/api/search", {"photo_upload_ids": ["0123456789abcdef"]})
    assert status == 404 and "no upload" in answer["error"]
