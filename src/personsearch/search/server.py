"""The search web page and its JSON API (stdlib ``http.server``; API in docs/search.md).

Safety (docs/search.md "Safety"): binds to 127.0.0.1 by default; answers only requests whose
``Host`` is in the allow-list (the bind address, ``localhost``, 127.0.0.1, ``::1`` and
``--allowed-host`` names) against DNS rebinding; POSTs must be same-origin and carry a JSON
(search) or image (upload) content type; images are served by index image id only (the path
comes from the index and must resolve inside the indexed folder), never from a client-given
path (a video frame is decoded from its indexed video, search/gallery_images.py); uploads are
limited in bytes and in declared pixels (checked before decoding), downscaled
on receipt and kept in memory in a store bounded in bytes; JSON bodies are limited in size and
nesting depth, numbers must be finite; reading a request (headers and body) has a deadline, and
at most ``max_connections`` connections are served at once. Checks: search/http_checks.py,
uploads: search/uploads.py.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from personsearch.errors import PersonSearchError
from personsearch.search.http_checks import (
    RequestRefused,
    allowed_host_names,
    check_content_type,
    check_host,
    check_same_origin,
    finite_number,
    parse_json_object,
)
from personsearch.search.gallery_images import load_frame
from personsearch.search.photo import BOX_MODES, Photo, search_with_photos
from personsearch.search.query import WEIGHTINGS, search_with_image, search_with_person
from personsearch.search.store import GalleryStore
from personsearch.search.uploads import UploadStore, decode_upload
from personsearch.search.video import time_code

ApiError = RequestRefused  # an error answered as JSON {"error": message} with its status
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PHOTOS = 8  # photos combined in one photo query
MAX_UPLOAD_PIXELS = 24_000_000
UPLOAD_STORE_BYTES = 128 * 1024 * 1024
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
JSON_TYPES = ("application/json",)
UPLOAD_TYPES = ("image/*", "application/octet-stream")
# the page's scripts, styles and images all come from this server; it may not be framed
PAGE_POLICY = "default-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class HttpLimits:
    """Limits of the HTTP layer (the defaults are the ``serve`` defaults)."""

    request_timeout_s: float = 30.0  # reading one request (line, headers, body) and idle keep-alive
    write_timeout_s: float = 30.0  # each send of an answer
    max_connections: int = 32  # served at once; more get 503 at once
    max_json_bytes: int = 64 * 1024
    max_json_depth: int = 16
    upload_slots: int = 2  # uploads read and decoded at once (bounds their transient memory)
    upload_slot_wait_s: float = 10.0


class SearchApp:
    """State shared by the request handlers: the open index, the model (optional) and uploads."""

    def __init__(self, store: GalleryStore, embedder=None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_upload_pixels: int = MAX_UPLOAD_PIXELS, upload_store_bytes: int = UPLOAD_STORE_BYTES) -> None:
        self.store = store
        self.embedder = embedder
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_upload_pixels = int(max_upload_pixels)
        self.images_root = Path(store.settings.images_root).resolve()
        self.uploads = UploadStore(upload_store_bytes)
        self._model_lock = threading.Lock()
        self.static = {name: resources.files("personsearch.search").joinpath("static", name).read_bytes()
                       for name in STATIC_FILES}

    # -------------------------------------------------------------- helpers

    def image_path(self, image_id: int) -> tuple[Path, object]:
        """(file, row) of an indexed image; for a video frame the file is the video."""
        row = self.store.image(image_id)
        if row is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no image with id {image_id}")
        frame = self.store.frame(image_id)
        rel_path = row.rel_path if frame is None else frame.video
        path = (self.images_root / rel_path).resolve()
        if not path.is_relative_to(self.images_root):  # a symlink or odd row leading outside
            raise ApiError(HTTPStatus.FORBIDDEN, f"image {image_id} is outside the indexed folder")
        if not path.is_file():
            raise ApiError(HTTPStatus.NOT_FOUND, f"image {image_id} ({rel_path}) is no longer on disk")
        return path, row

    def image_pixels(self, image_id: int) -> tuple[np.ndarray, object]:
        """(RGB [H, W, 3], row) of an indexed image or video frame (decoded from the video)."""
        path, row = self.image_path(image_id)
        frame = self.store.frame(image_id)
        if frame is None:
            from personsearch.data.transforms import load_image

            return load_image(path), row
        try:
            return load_frame(path, frame.pts), row
        except PersonSearchError:
            raise ApiError(HTTPStatus.NOT_FOUND, f"image {image_id} ({row.rel_path}) cannot be decoded") from None

    def add_upload(self, data: bytes) -> dict:
        if len(data) > self.max_upload_bytes:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"upload is {len(data)} bytes, limit {self.max_upload_bytes}")
        settings = self.store.settings
        upload = decode_upload(data, self.max_upload_pixels, settings.min_size, settings.max_size)
        upload_id = self.uploads.add(upload)
        height, width = upload.rgb.shape[:2]
        return {"upload_id": upload_id, "width": width, "height": height,
                "original_width": upload.original_size[0], "original_height": upload.original_size[1],
                "scale": round(width / upload.original_size[0], 6)}

    # -------------------------------------------------------------- API

    def info(self) -> dict:
        settings = self.store.settings
        frames = self.store.count_frames()
        return {"images": self.store.count_images() - frames, "videos": len(self.store.videos()),
                "video_frames": frames, "persons": self.store.count_persons(),
                "index_type": settings.index_type, "embedding_dim": settings.embedding_dim,
                "fingerprint": settings.fingerprint[:12], "method": settings.method,
                "box_queries": self.embedder is not None, "max_upload_bytes": self.max_upload_bytes,
                "max_upload_pixels": self.max_upload_pixels,
                "upload_store": {"uploads": len(self.uploads), "bytes": self.uploads.total_bytes,
                                 "max_bytes": self.uploads.max_bytes}}

    def list_images(self, query: dict) -> dict:
        offset = _int_param(query, "offset", 0, 0, 10**9)
        limit = _int_param(query, "limit", 100, 1, 1000)
        rows = self.store.images(offset, limit)
        images = []
        for r in rows:
            if r.error is not None:
                continue
            entry = {"id": r.id, "name": r.rel_path, "width": r.width, "height": r.height, "persons": r.n_persons}
            frame = self.store.frame(r.id)
            if frame is not None:
                entry.update(video=frame.video, seconds=frame.seconds, time_code=time_code(frame.seconds))
            images.append(entry)
        return {"total": self.store.count_images(), "offset": offset, "images": images}

    def persons(self, image_id: int) -> dict:
        _, row = self.image_path(image_id)
        return {"image_id": row.id, "persons": [{"person_id": p.id, "box": list(p.box), "score": p.score}
                                                for p in self.store.persons_of_image(image_id)]}

    def search(self, body: dict) -> dict:
        top_k = _int_value(body.get("top", 10), "top", 1, 100)
        weighting = body.get("weighting", "score")
        if weighting not in WEIGHTINGS:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"weighting must be one of {', '.join(WEIGHTINGS)}")
        min_score = finite_number(body.get("min_score", 0.0), "min_score", 0.0, 1.0)
        options = {"top_k": top_k, "weighting": weighting, "min_score": min_score}
        if "person_id" in body:
            result = search_with_person(self.store, _int_value(body["person_id"], "person_id", 0, 2**62), **options)
            return result.to_json()
        if "photo_upload_ids" in body:
            return self.search_photos(body, options)
        if "image_id" not in body and "upload_id" not in body:
            raise ApiError(HTTPStatus.BAD_REQUEST, "give person_id, photo_upload_ids, or box with image_id or upload_id")
        box = body.get("box")
        if not (isinstance(box, list) and len(box) == 4):
            raise ApiError(HTTPStatus.BAD_REQUEST, "box must be [x1, y1, x2, y2] numbers")
        box_values = [finite_number(v, "each box coordinate", -1e9, 1e9) for v in box]
        if self.embedder is None:
            raise ApiError(HTTPStatus.CONFLICT, "box queries need the model: start the server with --checkpoint")
        box_array = np.asarray(box_values, dtype=np.float32)
        if "image_id" in body:
            image_id = _int_value(body["image_id"], "image_id", 0, 2**62)
            image, row = self.image_pixels(image_id)
            where, digest = row.rel_path, row.sha256
        else:
            image = self.uploads.get(str(body["upload_id"])).rgb
            where, digest = "upload", None
        with self._model_lock:
            result = search_with_image(self.store, self.embedder, image, box_array, where=where,
                                       image_sha256=digest, **options)
        data = result.to_json()
        if "image_id" in body:
            data["query"]["image_id"] = int(body["image_id"])
        return data

    def search_photos(self, body: dict, options: dict) -> dict:
        """Search with uploaded photos of the person (search/photo.py): ``photo_upload_ids`` (1 to
        ``MAX_PHOTOS`` upload ids), optional ``photo_box`` auto | whole | largest."""
        upload_ids = body["photo_upload_ids"]
        if not (isinstance(upload_ids, list) and 1 <= len(upload_ids) <= MAX_PHOTOS
                and all(isinstance(u, str) for u in upload_ids)):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"photo_upload_ids must be a list of 1 to {MAX_PHOTOS} upload ids")
        box_mode = body.get("photo_box", "auto")
        if box_mode not in BOX_MODES:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"photo_box must be one of {', '.join(BOX_MODES)}")
        if self.embedder is None:
            raise ApiError(HTTPStatus.CONFLICT, "photo queries need the model: start the server with --checkpoint")
        photos = [Photo(self.uploads.get(upload_id).rgb, "upload") for upload_id in upload_ids]
        with self._model_lock:
            result = search_with_photos(self.store, self.embedder, photos, box_mode=box_mode, **options)
        data = result.to_json()
        for described, upload_id in zip(data["query"]["photos"], upload_ids):
            described["upload_id"] = upload_id
        return data


def _int_value(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer in [{low}, {high}]")
    return value


def _int_param(query: dict, name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from None
    return _int_value(value, name, low, high)


_IMAGE_ROUTE = re.compile(r"^/api/images/(\d{1,18})(/persons)?$")
_UPLOAD_ROUTE = re.compile(r"^/api/uploads/([0-9a-f]{16})$")


class _DeadlineReader(io.RawIOBase):
    """The socket's reads for ``Handler.rfile``: each ``recv`` may wait only until the handler's
    ``read_deadline``, so a client that stalls (or trickles) a request line, headers or body
    frees its thread when the deadline passes (TimeoutError)."""

    def __init__(self, connection: socket.socket, handler: "Handler") -> None:
        self._connection = connection
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self._handler.read_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("reading the request took too long")
        self._connection.settimeout(remaining)
        return self._connection.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    app: SearchApp  # set on the subclass made by make_server
    server_version = "personsearch"
    protocol_version = "HTTP/1.1"
    # headers and body are two sends: without TCP_NODELAY, Nagle + the client's delayed ACK
    # added ~40-50 ms to every small answer on a kept-alive connection (seen in the soak)
    disable_nagle_algorithm = True
    read_deadline = 0.0

    def version_string(self) -> str:  # no Python or library version in the Server header
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain socket reader; the socket itself stays open
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), buffer_size=64 * 1024)

    def handle_one_request(self) -> None:
        # the deadline covers waiting for the request (keep-alive idle), its headers and its body
        self.read_deadline = time.monotonic() + self.server.limits.request_timeout_s
        super().handle_one_request()

    def log_message(self, format: str, *args) -> None:  # quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.connection.settimeout(self.server.limits.write_timeout_s)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Referrer-Policy", "no-referrer")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_POLICY)
        if self.close_connection:
            self.send_header("Connection", "close")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _dispatch(self, method) -> None:
        try:
            check_host(self.headers.get("Host"), self.server.allowed_hosts)
            method()
        except RequestRefused as error:
            self._json(error.status, {"error": error.message})
        except PersonSearchError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except (ConnectionError, TimeoutError):  # the client went away or stopped reading
            self.close_connection = True
        except Exception as error:  # never a traceback to the client; log it here
            self.log_error("internal error: %r", error)
            self.close_connection = True
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error ({type(error).__name__})"})

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _get(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        app = self.app
        if path in ("/", "/index.html"):
            return self._send(200, app.static["index.html"], STATIC_FILES["index.html"])
        if path == "/favicon.ico":  # browsers ask for it; the page has none
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in STATIC_FILES:  # a fixed set of names: no file system lookup at all
                raise ApiError(HTTPStatus.NOT_FOUND, "not found")
            return self._send(200, app.static[name], STATIC_FILES[name])
        if path == "/api/info":
            return self._json(200, app.info())
        if path == "/api/images":
            return self._json(200, app.list_images(query))
        match = _IMAGE_ROUTE.match(path)
        if match:
            image_id = int(match.group(1))
            if match.group(2):
                return self._json(200, app.persons(image_id))
            return self._send_image(image_id, query)
        match = _UPLOAD_ROUTE.match(path)
        if match:
            upload = app.uploads.get(match.group(1))
            return self._send(200, upload.encoded, upload.mime)
        raise ApiError(HTTPStatus.NOT_FOUND, "not found")

    def _send_image(self, image_id: int, query: dict) -> None:
        file_path, _ = self.app.image_path(image_id)
        max_side = _int_param(query, "max", 0, 0, 4096)
        if self.app.store.frame(image_id) is not None:  # a video frame: decoded from the video
            rgb, _ = self.app.image_pixels(image_id)
            image = Image.fromarray(np.asarray(rgb))
            if max_side:
                image.thumbnail((max_side, max_side))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            return self._send(200, buffer.getvalue(), "image/jpeg")
        try:
            with Image.open(file_path) as image:
                fmt = (image.format or "").upper()
                if max_side == 0 and fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP"):
                    return self._send(200, file_path.read_bytes(), f"image/{fmt.lower()}")
                if max_side:
                    image.draft("RGB", (max_side, max_side))
                image = ImageOps.exif_transpose(image).convert("RGB")  # upright, as the index saw it
                if max_side:
                    image.thumbnail((max_side, max_side))
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=85)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
            raise ApiError(HTTPStatus.NOT_FOUND, f"image {image_id} cannot be read") from None
        return self._send(200, buffer.getvalue(), "image/jpeg")

    def _read_body(self, limit: int) -> bytes:
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted: send Content-Length")
        if length_text is None:
            self.close_connection = True
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if length > limit:
            self.close_connection = True  # do not read (or keep) a body we refuse
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body of {length} bytes exceeds the limit of {limit}")
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise ApiError(HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time") from None
        if len(data) < length:
            self.close_connection = True
            raise ApiError(HTTPStatus.BAD_REQUEST, f"the request body ended after {len(data)} of {length} bytes")
        return data

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path not in ("/api/uploads", "/api/search"):
            raise ApiError(HTTPStatus.NOT_FOUND, "not found")
        try:
            check_same_origin(self.headers, self.headers.get("Host", ""))
            check_content_type(self.headers.get("Content-Type"), UPLOAD_TYPES if path == "/api/uploads" else JSON_TYPES)
        except RequestRefused:
            self.close_connection = True  # its body is left unread
            raise
        limits = self.server.limits
        if path == "/api/uploads":
            if not self.server.upload_slots.acquire(timeout=limits.upload_slot_wait_s):
                self.close_connection = True
                raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "too many uploads at once; try again")
            try:
                data = self._read_body(self.app.max_upload_bytes)
                answer = self.app.add_upload(data)
                del data
            finally:
                self.server.upload_slots.release()
            return self._json(201, answer)
        body = parse_json_object(self._read_body(limits.max_json_bytes), limits.max_json_depth)
        return self._json(200, self.app.search(body))


class SearchServer(ThreadingHTTPServer):
    """A thread per connection, at most ``limits.max_connections`` at once (more are answered
    503 and closed without a thread)."""

    daemon_threads = True

    def __init__(self, address, handler, allowed_hosts: frozenset[str], limits: HttpLimits, verbose: bool) -> None:
        self.allowed_hosts = allowed_hosts
        self.limits = limits
        self.verbose = verbose
        self.connection_slots = threading.BoundedSemaphore(limits.max_connections)
        self.upload_slots = threading.BoundedSemaphore(limits.upload_slots)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self.connection_slots.acquire(blocking=False):
            body = b'{"error": "too many connections; try again"}'
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nServer: personsearch\r\n"
                                b"Content-Type: application/json\r\nConnection: close\r\n"
                                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connection_slots.release()
            raise

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside a request's handling (reset, broken pipe): one
        line with --verbose, nothing otherwise (never a traceback)."""
        if self.verbose:
            import sys

            print(f"connection from {client_address[0]} failed: {sys.exc_info()[1]!r}", file=sys.stderr)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connection_slots.release()


def make_server(app: SearchApp, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False,
                allowed_hosts: tuple[str, ...] | list[str] = (), limits: HttpLimits | None = None) -> SearchServer:
    """The server for ``app`` on ``host:port``; requests must name ``host``, a loopback name
    or one of ``allowed_hosts`` in their Host header."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    return SearchServer((host, port), handler, allowed_host_names(host, allowed_hosts), limits or HttpLimits(), verbose)
