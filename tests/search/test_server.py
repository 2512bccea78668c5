"""The search web server's JSON API, against a server on 127.0.0.1 in a thread."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request

import pytest
from PIL import Image

from search_fixtures import ColourEmbedder
from personsearch.search.build import build_index
from personsearch.search.server import SearchApp, make_server
from personsearch.search.store import GalleryStore


@pytest.fixture
def server(tmp_path, scene_dir):
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    (tmp_path / "secret.txt").write_text("top secret")
    store = GalleryStore.open(tmp_path / "idx")
    app = SearchApp(store, ColourEmbedder(), max_upload_bytes=200_000)
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", store
    httpd.shutdown()
    httpd.server_close()
    store.close()


def request(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post_json(url, body):
    status, _, data = request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status, json.loads(data)


def png_bytes(size=(40, 30), colour=(220, 20, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_page_info_and_images(server):
    base, store = server
    status, headers, body = request(base + "/")
    assert status == 200 and b"<canvas" in body and headers["Content-Type"].startswith("text/html")
    assert request(base + "/static/app.js")[0] == 200
    info = json.loads(request(base + "/api/info")[2])
    assert info["images"] == 4 and info["persons"] == 5 and info["box_queries"] is True
    listing = json.loads(request(base + "/api/images")[2])
    names = {entry["name"]: entry["id"] for entry in listing["images"]}
    assert set(names) == {"a.png", "b.png", "d.png", "sub/c.png"}
    status, headers, body = request(f"{base}/api/images/{names['a.png']}")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(body)).size == (96, 64)
    status, headers, body = request(f"{base}/api/images/{names['a.png']}?max=32")
    assert status == 200 and max(Image.open(io.BytesIO(body)).size) == 32
    persons = json.loads(request(f"{base}/api/images/{names['a.png']}/persons")[2])["persons"]
    assert len(persons) == 2


def test_search_by_image_box_and_person(server):
    base, store = server
    a = store.known_images()["a.png"][0]
    status, result = post_json(base + "/api/search", {"image_id": a, "box": [5, 5, 20, 50], "top": 3})
    assert status == 200
    assert result["hits"][0]["image"] == "b.png" and result["hits"][0]["box"] == [60.0, 8.0, 75.0, 58.0]
    assert all(hit["image_id"] != a for hit in result["hits"])  # the query's own image is left out
    status, again = post_json(base + "/api/search", {"person_id": result["hits"][0]["person_id"], "top": 1})
    assert status == 200 and again["hits"][0]["image"] == "a.png"


def test_upload_then_search(server):
    base, _ = server
    status, _, body = request(base + "/api/uploads", png_bytes(), {"Content-Type": "image/png"})
    assert status == 201
    upload = json.loads(body)
    assert (upload["width"], upload["height"]) == (40, 30)
    assert request(f"{base}/api/uploads/{upload['upload_id']}")[0] == 200
    status, result = post_json(base + "/api/search", {"upload_id": upload["upload_id"], "box": [0, 0, 40, 30], "top": 2})
    assert status == 200 and {h["image"] for h in result["hits"]} == {"a.png", "b.png"}


def test_upload_limits(server):
    base, _ = server
    status, _, body = request(base + "/api/uploads", b"\x89PNG" + b"\x00" * 300_000, {"Content-Type": "image/png"})
    assert status == 413 and b"exceeds the limit" in body
    status, _, body = request(base + "/api/uploads", b"<html><script>alert(1)</script></html>", {"Content-Type": "image/png"})
    assert status == 415 and b"not a readable image" in body
    status, _, body = request(base + "/api/uploads", b"", {"Content-Type": "image/png"})
    assert status == 415


def test_bad_search_requests(server):
    base, store = server
    a = store.known_images()["a.png"][0]
    cases = [
        ({"image_id": a, "box": [50, 10, 200, 60]}, 400, "outside the image"),
        ({"image_id": a, "box": [20, 10, 5, 60]}, 400, "empty query box"),
        ({"image_id": a, "box": "5,5,20,50"}, 400, "box must be"),
        ({"image_id": 999999, "box": [1, 1, 5, 5]}, 404, "no image with id"),
        ({"upload_id": "0123456789abcdef", "box": [1, 1, 5, 5]}, 404, "no upload"),
        ({"person_id": "1"}, 400, "person_id must be an integer"),
        ({"image_id": a, "box": [5, 5, 20, 50], "top": 0}, 400, "top must be"),
        ({}, 400, "give person_id"),
    ]
    for body, expected_status, message in cases:
        status, result = post_json(base + "/api/search", body)
        assert status == expected_status, body
        assert message in result["error"], (body, result)
    status, _, data = request(base + "/api/search", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and b"not JSON" in data


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/static/../../secret.txt", "/static/..%2f..%2fsecret.txt", "/api/images/../../secret.txt",
    "/api/images/%2e%2e%2fsecret.txt", "/api/images/1/../../../secret.txt", "/api/images?path=../secret.txt",
    "/static/%2e%2e/%2e%2e/secret.txt", "/api/uploads/../../secret.txt", "/etc/passwd", "//etc/passwd",
    "/api/images/-1", "/api/images/1.png",
])
def test_no_path_outside_the_index_can_be_read(server, path):
    base, _ = server
    status, _, body = request(base + path)
    assert b"top secret" not in body and b"root:" not in body
    if path != "/api/images?path=../secret.txt":  # the listing ignores unknown parameters
        assert status == 404, path


def test_symlinked_image_leading_outside_is_refused(tmp_path, scene_dir, server):
    base, store = server
    # tamper with the index so that a row points outside the folder: still refused
    store._connection.execute("UPDATE images SET rel_path='../secret.txt' WHERE rel_path='d.png'")
    d = store.known_images()["../secret.txt"][0]
    status, _, body = request(f"{base}/api/images/{d}")
    assert status == 403 and b"top secret" not in body


def test_person_queries_work_without_model(tmp_path, scene_dir):
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    with GalleryStore.open(tmp_path / "idx") as store:
        app = SearchApp(store, None)
        with pytest.raises(Exception, match="--checkpoint"):
            app.search({"image_id": 1, "box": [1, 1, 5, 5]})
        person = store.persons_of_image(store.known_images()["a.png"][0])[0]
        assert app.search({"person_id": person.id})["hits"]
