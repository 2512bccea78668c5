"""The search web server's JSON API, against a server on 127.0.0.1 in a thread."""

from __future__ import annotations

import io
import json
import socket
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
    assert info["upload_store"] == {"uploads": 0, "bytes": 0, "max_bytes": 128 * 2**20}
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



# ---------------------------------------------------------------- the cases observed in issue 13

def raw_exchange(base: str, payload: bytes, wait_s: float = 20.0) -> bytes:
    """Send ``payload`` on a fresh connection, then read until the server closes it (or
    ``wait_s`` passes: the test then fails on what came back)."""
    host, port = base.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as connection:
        connection.sendall(payload)
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            chunks.append(b"<client gave up waiting>")
    return b"".join(chunks)


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8000", "127.0.0.1.evil.example", "10.0.0.1"])
def test_foreign_host_header_is_refused(server, host):
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host."""
    base, _ = server
    for path in ("/api/info", "/api/images", "/", "/api/images/1"):
        status, _, body = request(base + path, headers={"Host": host})
        assert status == 403 and b"is not served here" in body, (host, path)
    status, _, _ = request(base + "/api/search", json.dumps({"person_id": 1}).encode(),
                           {"Host": host, "Content-Type": "application/json"})
    assert status == 403


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "[::1]:8000"])
def test_loopback_host_names_are_served(server, host):
    base, _ = server
    status, _, _ = request(base + "/api/info", headers={"Host": host})
    assert status == 200


def test_cross_origin_post_is_refused(server):
    """A page on another site can POST text/plain without a preflight; it must not search."""
    base, store = server
    person = store.persons_of_image(store.known_images()["a.png"][0])[0].id
    body = json.dumps({"person_id": person}).encode()
    cross_site = {"Origin": "http://evil.example.com", "Sec-Fetch-Site": "cross-site"}
    status, _, data = request(base + "/api/search", body, {"Content-Type": "text/plain", **cross_site})
    assert status == 403 and b"cross-site" in data
    status, _, data = request(base + "/api/search", body, {"Content-Type": "application/json", **cross_site})
    assert status == 403
    status, _, data = request(base + "/api/search", body, {"Content-Type": "application/json",
                                                            "Origin": "http://evil.example.com"})
    assert status == 403 and b"cross-origin" in data
    status, _, data = request(base + "/api/search", body, {"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"})
    assert status == 403
    status, _, data = request(base + "/api/uploads", png_bytes(), {"Content-Type": "image/png", **cross_site})
    assert status == 403
    # a simple (unpreflighted) content type is refused even without the browser's headers
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _, data = request(base + "/api/search", body, {"Content-Type": content_type})
        assert status == 415 and b"not accepted" in data, content_type
        status, _, data = request(base + "/api/uploads", png_bytes(), {"Content-Type": content_type})
        assert status == 415, content_type
    # the page itself: same origin
    own = base.split("//", 1)[1]
    status, _, data = request(base + "/api/search", body, {"Content-Type": "application/json; charset=utf-8",
                                                            "Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and json.loads(data)["hits"]


def png_declaring(width: int, height: int) -> bytes:
    """A PNG signature + IHDR declaring width x height, then an IDAT chunk of 8 bytes that are
    not compressed pixel data (decoding it fails)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"notzlib!")


def test_huge_declared_image_is_refused_before_decoding(server):
    base, _ = server
    buffer = io.BytesIO()
    Image.new("1", (7000, 7000), 0).save(buffer, format="PNG")  # 49 Mpixel in a few KB
    status, _, data = request(base + "/api/uploads", buffer.getvalue(), {"Content-Type": "image/png"})
    assert status == 413 and b"49.0 Mpixel" in data
    # the header alone decides: a file with no pixel data at all gets the same answer, not "unreadable"
    status, _, data = request(base + "/api/uploads", png_declaring(7000, 7000), {"Content-Type": "image/png"})
    assert status == 413 and b"Mpixel" in data
    status, _, data = request(base + "/api/uploads", png_declaring(70, 70), {"Content-Type": "image/png"})
    assert status == 415 and b"not a readable image" in data  # small enough: decoded, and found broken


def test_large_upload_is_downscaled_on_receipt(server):
    base, _ = server
    buffer = io.BytesIO()
    image = Image.new("RGB", (1200, 800), (128, 128, 128))
    image.paste((220, 20, 20), (100, 100, 300, 700))
    image.save(buffer, format="PNG")
    status, _, data = request(base + "/api/uploads", buffer.getvalue(), {"Content-Type": "image/png"})
    assert status == 201
    upload = json.loads(data)
    # the index preprocesses to short side 64, long side <= 96: scale min(64/800, 96/1200) = 0.08
    assert (upload["width"], upload["height"]) == (96, 64)
    assert (upload["original_width"], upload["original_height"], upload["scale"]) == (1200, 800, 0.08)
    served = Image.open(io.BytesIO(request(f"{base}/api/uploads/{upload['upload_id']}")[2]))
    assert served.size == (96, 64)
    # the red person at (100,100)-(300,700) is at (8,8)-(24,56) in the stored image
    status, result = post_json(base + "/api/search", {"upload_id": upload["upload_id"], "box": [8, 8, 24, 56], "top": 1})
    assert status == 200 and result["hits"][0]["image"] in ("a.png", "b.png")


def test_deeply_nested_json_is_a_400(server):
    base, _ = server
    for depth in (30_000, 17):
        raw = b"[" * depth + b"]" * depth
        status, _, data = request(base + "/api/search", raw, {"Content-Type": "application/json"})
        assert status == 400 and f"nested {depth} deep".encode() in data, depth
    status, _, data = request(base + "/api/search", b'{"person_id": 1, "x": ' + b"{" * 20_000 + b"}" * 20_000 + b"}",
                              {"Content-Type": "application/json"})
    assert status == 400


@pytest.mark.parametrize("raw, message", [
    (b'{"person_id": %d, "min_score": NaN}', b"not allowed"),
    (b'{"person_id": %d, "min_score": Infinity}', b"not allowed"),
    (b'{"person_id": %d, "min_score": -Infinity}', b"not allowed"),
    (b'{"person_id": %d, "min_score": 1e999}', b"min_score must be a finite number in [0, 1]"),
    (b'{"person_id": %d, "min_score": 2}', b"min_score must be a finite number in [0, 1]"),
    (b'{"person_id": %d, "min_score": "0.5"}', b"min_score must be a number"),
    (b'{"person_id": %d, "min_score": true}', b"min_score must be a number"),
    (b'{"person_id": %d, "weighting": ["score"]}', b"weighting must be one of"),
])
def test_non_finite_and_out_of_range_numbers_are_a_400(server, raw, message):
    base, store = server
    person = store.persons_of_image(store.known_images()["a.png"][0])[0].id
    status, _, data = request(base + "/api/search", raw % person, {"Content-Type": "application/json"})
    assert status == 400 and message in data, data


@pytest.mark.parametrize("box", ["[5, 5, 20, 1e999]", "[5, 5, NaN, 50]", "[5, 5, 20, true]",
                                 "[5, 5, 20, %d]" % 10**400])
def test_non_finite_box_is_a_400(server, box):
    base, store = server
    a = store.known_images()["a.png"][0]
    raw = b'{"image_id": %d, "box": %s}' % (a, box.encode())
    status, _, data = request(base + "/api/search", raw, {"Content-Type": "application/json"})
    assert status == 400, data


def test_server_header_has_no_python_version(server):
    base, _ = server
    for path in ("/", "/api/info", "/nothing-here"):
        _, headers, _ = request(base + path)
        assert headers["Server"] == "personsearch", headers["Server"]
    assert request(base + "/favicon.ico")[:3:2] == (204, b"")  # asked for by browsers: no 404 in their console


def test_page_headers_forbid_framing_and_cross_origin_embedding(server):
    base, _ = server
    _, headers, _ = request(base + "/")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    _, headers, _ = request(base + "/api/images/1?max=32")
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"


def limited_server(tmp_path, scene_dir, **limits):
    """A server with ``HttpLimits(**limits)`` and the extra allowed host photos.lan."""
    from personsearch.search.server import HttpLimits

    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    store = GalleryStore.open(tmp_path / "idx")
    httpd = make_server(SearchApp(store, ColourEmbedder()), "127.0.0.1", 0, allowed_hosts=["photos.lan"],
                        limits=HttpLimits(**limits))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()
    store.close()


@pytest.fixture
def strict_server(tmp_path, scene_dir):
    """Reading a request may take 0.5 s."""
    yield from limited_server(tmp_path, scene_dir, request_timeout_s=0.5)


@pytest.fixture
def two_slot_server(tmp_path, scene_dir):
    """Two connections at once; idle ones are kept for 60 s (so they hold their slots)."""
    yield from limited_server(tmp_path, scene_dir, request_timeout_s=60, max_connections=2)


def test_stalled_body_is_answered_408_and_closed(strict_server):
    base, _ = strict_server
    head = (b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"person_id\":")
    answer = raw_exchange(base, head)  # returns once the server closes the connection
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive in time" in answer, answer[:200]


def test_stalled_headers_close_the_connection(strict_server):
    base, _ = strict_server
    answer = raw_exchange(base, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert answer == b""  # closed without an answer, not held open
    assert raw_exchange(base, b"") == b""  # an idle keep-alive connection is closed too


def test_trickled_body_cannot_extend_the_deadline(strict_server):
    """One byte at a time keeps each read short, but the request as a whole has a deadline."""
    base, _ = strict_server
    host, port = base.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000\r\n\r\n")
        answer, sent = b"", 0
        connection.settimeout(0.1)
        while sent < 1000 and not answer:
            try:
                connection.sendall(b" ")
                sent += 1
                answer = connection.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert sent < 1000 and answer.startswith(b"HTTP/1.1 408"), (sent, answer[:100])


def test_allowed_host_flag_adds_a_name(two_slot_server):
    base, _ = two_slot_server
    assert request(base + "/api/info", headers={"Host": "photos.lan:8000"})[0] == 200
    assert request(base + "/api/info", headers={"Host": "photos.lan.evil.example"})[0] == 403


def test_connections_beyond_the_limit_get_503_and_slots_come_back(two_slot_server):
    base, httpd = two_slot_server
    host, port = base.rsplit("/", 1)[-1].split(":")
    idle = [socket.create_connection((host, int(port)), timeout=20) for _ in range(2)]
    try:
        idle[0].sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle[0].recv(65536).startswith(b"HTTP/1.1 200")  # both slots are now taken
        idle[1].sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle[1].recv(65536).startswith(b"HTTP/1.1 200")
        answer = raw_exchange(base, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503") and b"too many connections" in answer
    finally:
        for connection in idle:
            connection.close()
    # the two handlers see the close and give their slots back
    for _ in range(200):
        if httpd.connection_slots._value == 2:
            break
        threading.Event().wait(0.05)
    assert request(base + "/api/info")[0] == 200


def test_upload_store_is_bounded_in_bytes(tmp_path, scene_dir):
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    with GalleryStore.open(tmp_path / "idx") as store:
        first = SearchApp(store, ColourEmbedder())
        one = first.uploads.get(first.add_upload(png_bytes((96, 64)))["upload_id"])
        entry_bytes = 96 * 64 * 3 + 1024 + len(one.encoded)  # RGB + bookkeeping + the PNG served back
        assert first.uploads.total_bytes == entry_bytes
        # room for 3.5 entries (one-colour PNGs of one size differ by a few bytes at most)
        app = SearchApp(store, ColourEmbedder(), upload_store_bytes=entry_bytes * 7 // 2)
        ids = [app.add_upload(png_bytes((96, 64), (10 * i, 20, 20)))["upload_id"] for i in range(10)]
        assert len(app.uploads) == 3 and app.uploads.total_bytes <= app.uploads.max_bytes
        assert app.search({"upload_id": ids[-1], "box": [0, 0, 96, 64], "top": 1})["hits"]
        with pytest.raises(Exception, match="no upload"):
            app.search({"upload_id": ids[0], "box": [0, 0, 96, 64]})


def test_thumbnail_of_an_exif_rotated_photo_is_upright(tmp_path, scene_dir):
    """The full image is sent as it is (browsers apply its EXIF orientation); a thumbnail is
    re-encoded without EXIF, so it must be turned upright like the index's boxes."""
    photo = Image.new("RGB", (60, 40), (128, 128, 128))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: 40 wide, 60 high
    photo.save(scene_dir / "phone.jpg", exif=exif)
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    with GalleryStore.open(tmp_path / "idx") as store:
        httpd = make_server(SearchApp(store, ColourEmbedder()), "127.0.0.1", 0)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            base = f"http://127.0.0.1:{httpd.server_address[1]}"
            image_id = store.known_images()["phone.jpg"][0]
            status, _, body = request(f"{base}/api/images/{image_id}?max=30")
            assert status == 200 and Image.open(io.BytesIO(body)).size == (20, 30)
        finally:
            httpd.shutdown()
            httpd.server_close()
