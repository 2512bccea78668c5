"""The search web page and its JSON API (stdlib ``http.server``; API in docs/search.md).

Safety: binds to 127.0.0.1 by default; images are served by index image id only (the path comes
from the index and must resolve inside the indexed folder), never from a client-given path;
uploads are limited in size (``max_upload_bytes``) and must decode as an image with PIL; they are
kept in memory only (the last ``max_uploads``).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError

from personsearch.errors import PersonSearchError
from personsearch.search.query import search_with_image, search_with_person
from personsearch.search.store import GalleryStore

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_JSON_BYTES = 64 * 1024
MAX_PIXELS = 50_000_000
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SearchApp:
    """State shared by the request handlers: the open index, the model (optional) and uploads."""

    def __init__(self, store: GalleryStore, embedder=None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 max_uploads: int = 16) -> None:
        self.store = store
        self.embedder = embedder
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_uploads = int(max_uploads)
        self.images_root = Path(store.settings.images_root).resolve()
        self._uploads: OrderedDict[str, tuple[np.ndarray, bytes, str]] = OrderedDict()
        self._uploads_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.static = {name: resources.files("personsearch.search").joinpath("static", name).read_bytes()
                       for name in STATIC_FILES}

    # -------------------------------------------------------------- helpers

    def image_path(self, image_id: int) -> tuple[Path, object]:
        row = self.store.image(image_id)
        if row is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no image with id {image_id}")
        path = (self.images_root / row.rel_path).resolve()
        if not path.is_relative_to(self.images_root):  # a symlink or odd row leading outside
            raise ApiError(HTTPStatus.FORBIDDEN, f"image {image_id} is outside the indexed folder")
        if not path.is_file():
            raise ApiError(HTTPStatus.NOT_FOUND, f"image {image_id} ({row.rel_path}) is no longer on disk")
        return path, row

    def add_upload(self, data: bytes) -> dict:
        if len(data) > self.max_upload_bytes:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"upload is {len(data)} bytes, limit {self.max_upload_bytes}")
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"image of {image.width}x{image.height} pixels is too large")
                image.load()
                fmt = (image.format or "PNG").upper()
                rgb = np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "upload is not a readable image") from None
        mime = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
                "BMP": "image/bmp"}.get(fmt)
        if mime is None:  # serve the browser a PNG re-encoding of formats it may not show
            buffer = io.BytesIO()
            Image.fromarray(rgb).save(buffer, format="PNG")
            data, mime = buffer.getvalue(), "image/png"
        upload_id = secrets.token_hex(8)
        with self._uploads_lock:
            self._uploads[upload_id] = (rgb, data, mime)
            while len(self._uploads) > self.max_uploads:
                self._uploads.popitem(last=False)
        return {"upload_id": upload_id, "width": int(rgb.shape[1]), "height": int(rgb.shape[0])}

    def upload(self, upload_id: str) -> tuple[np.ndarray, bytes, str]:
        with self._uploads_lock:
            if upload_id not in self._uploads:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no upload {upload_id!r} (uploads are kept in memory, the last {self.max_uploads})")
            return self._uploads[upload_id]

    # -------------------------------------------------------------- API

    def info(self) -> dict:
        settings = self.store.settings
        return {"images": self.store.count_images(), "persons": self.store.count_persons(),
                "index_type": settings.index_type, "embedding_dim": settings.embedding_dim,
                "fingerprint": settings.fingerprint[:12], "method": settings.method,
                "box_queries": self.embedder is not None, "max_upload_bytes": self.max_upload_bytes}

    def list_images(self, query: dict) -> dict:
        offset = _int_param(query, "offset", 0, 0, 10**9)
        limit = _int_param(query, "limit", 100, 1, 1000)
        rows = self.store.images(offset, limit)
        return {"total": self.store.count_images(), "offset": offset,
                "images": [{"id": r.id, "name": r.rel_path, "width": r.width, "height": r.height,
                            "persons": r.n_persons} for r in rows if r.error is None]}

    def persons(self, image_id: int) -> dict:
        _, row = self.image_path(image_id)
        return {"image_id": row.id, "persons": [{"person_id": p.id, "box": list(p.box), "score": p.score}
                                                for p in self.store.persons_of_image(image_id)]}

    def search(self, body: dict) -> dict:
        top_k = _int_value(body.get("top", 10), "top", 1, 100)
        weighting = body.get("weighting", "score")
        min_score = body.get("min_score", 0.0)
        if not isinstance(min_score, (int, float)):
            raise ApiError(HTTPStatus.BAD_REQUEST, "min_score must be a number")
        options = {"top_k": top_k, "weighting": weighting, "min_score": float(min_score)}
        if "person_id" in body:
            result = search_with_person(self.store, _int_value(body["person_id"], "person_id", 0, 2**62), **options)
            return result.to_json()
        if "image_id" not in body and "upload_id" not in body:
            raise ApiError(HTTPStatus.BAD_REQUEST, "give person_id, or box with image_id or upload_id")
        box = body.get("box")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise ApiError(HTTPStatus.BAD_REQUEST, "box must be [x1, y1, x2, y2] numbers")
        if self.embedder is None:
            raise ApiError(HTTPStatus.CONFLICT, "box queries need the model: start the server with --checkpoint")
        box_array = np.asarray(box, dtype=np.float32)
        if "image_id" in body:
            image_id = _int_value(body["image_id"], "image_id", 0, 2**62)
            path, row = self.image_path(image_id)
            from personsearch.data.transforms import load_image

            image = load_image(path)
            where, digest = row.rel_path, row.sha256
        elif "upload_id" in body:
            image, _, _ = self.upload(str(body["upload_id"]))
            where, digest = "upload", None
        else:
            raise ApiError(HTTPStatus.BAD_REQUEST, "give person_id, or box with image_id or upload_id")
        with self._model_lock:
            result = search_with_image(self.store, self.embedder, image, box_array, where=where,
                                       image_sha256=digest, **options)
        data = result.to_json()
        if "image_id" in body:
            data["query"]["image_id"] = int(body["image_id"])
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


class Handler(BaseHTTPRequestHandler):
    app: SearchApp  # set on the subclass made by make_server
    server_version = "personsearch"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _dispatch(self, method) -> None:
        try:
            method()
        except ApiError as error:
            self._json(error.status, {"error": error.message})
        except PersonSearchError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except Exception as error:  # never a traceback to the client; log it here
            self.log_error("internal error: %r", error)
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
            _, data, mime = app.upload(match.group(1))
            return self._send(200, data, mime)
        raise ApiError(HTTPStatus.NOT_FOUND, "not found")

    def _send_image(self, image_id: int, query: dict) -> None:
        file_path, _ = self.app.image_path(image_id)
        max_side = _int_param(query, "max", 0, 0, 4096)
        try:
            with Image.open(file_path) as image:
                fmt = (image.format or "").upper()
                if max_side == 0 and fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP"):
                    return self._send(200, file_path.read_bytes(), f"image/{fmt.lower()}")
                image = image.convert("RGB")
                if max_side:
                    image.thumbnail((max_side, max_side))
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=85)
        except (OSError, UnidentifiedImageError):
            raise ApiError(HTTPStatus.NOT_FOUND, f"image {image_id} cannot be read") from None
        return self._send(200, buffer.getvalue(), "image/jpeg")

    def _read_body(self, limit: int) -> bytes:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        try:
            length = int(length_text)
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length < 0:
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if length > limit:
            self.close_connection = True  # do not read (or keep) a body we refuse
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body of {length} bytes exceeds the limit of {limit}")
        return self.rfile.read(length)

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/uploads":
            data = self._read_body(self.app.max_upload_bytes)
            return self._json(201, self.app.add_upload(data))
        if path == "/api/search":
            raw = self._read_body(MAX_JSON_BYTES)
            try:
                body = json.loads(raw or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise ApiError(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
            if not isinstance(body, dict):
                raise ApiError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
            return self._json(200, self.app.search(body))
        raise ApiError(HTTPStatus.NOT_FOUND, "not found")


def make_server(app: SearchApp, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.verbose = verbose
    return server
