"""A loopback soak of the search server: several concurrent clients send a fixed mix of
requests to ``personsearch serve`` running in its own process on 127.0.0.1, then stop. Reports
the latency per kind of request (p50 / p99), every status that was not the expected one, and the
server process's memory (RSS from /proc, Linux) before the load, after a warm-up and at the end,
and the server's upload store at the end (``/api/info``).

Used by tests/search/test_soak.py (a short run asserting that every answer is the expected one
and that memory stays bounded) and benchmarks/serve_soak.py (the long run, JSON into
benchmarks/results/).

The mix (weights per cycle of 24 requests per client) covers every route, both kinds of search,
uploads of a large photo (``upload_size``, a JPEG and a PNG in turn, downscaled by the server on
receipt) with a search in each, and refused requests: a foreign Host (403), a 30,000-deep JSON array (400), a NaN
``min_score`` (400) and a PNG declaring 49 Mpixel (413).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# kind -> how many of each per cycle; the order inside a cycle is shuffled per client (seeded)
MIX = {"info": 1, "list": 1, "thumb": 3, "image": 2, "persons": 2, "search_person": 4, "search_box": 3,
       "upload": 1, "upload_get": 1, "search_upload": 1, "bad_host": 1, "deep_json": 1, "nan": 1, "huge_png": 1,
       "cross_site": 1}
EXPECTED = {"upload": 201, "bad_host": 403, "deep_json": 400, "nan": 400, "huge_png": 413, "cross_site": 403}


def process_memory(pid: int) -> dict:
    """VmRSS, VmHWM (peak RSS) in MB, the thread count and the open file descriptors of process
    ``pid`` (/proc, Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024,
            "threads": int(fields["Threads"]), "open_files": len(os.listdir(f"/proc/{pid}/fd"))}


def photo(size: tuple[int, int], fmt: str, seed: int = 0) -> bytes:
    """An image file (``fmt`` "PNG" or "JPEG") of ``size`` with random coloured rectangles."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(image)
    width, height = size
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height)
        draw.rectangle([x, y, x + rng.randrange(10, width // 4), y + rng.randrange(10, height // 3)],
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    return buffer.getvalue()


def huge_declared_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (7000, 7000), 0).save(buffer, format="PNG")
    return buffer.getvalue()


class ServerProcess:
    """``personsearch serve INDEX --port 0`` in a child process; ``port`` read from its banner."""

    def __init__(self, index: str | Path, extra_args: tuple[str, ...] = (), start_timeout_s: float = 300.0) -> None:
        command = [sys.executable, "-m", "personsearch.cli.main", "serve", str(index), "--port", "0", *extra_args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.monotonic() + start_timeout_s
        while self.port is None:
            line = self.process.stdout.readline()
            if not line:
                self.close()
                raise RuntimeError(f"the server stopped before serving: {self.process.stderr.read().strip()}")
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.port = int(match.group(1))
            elif time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the server did not start in time")

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Shared:
    images: list[int]
    persons: list[int]
    boxes: list[tuple[int, list[float]]]  # (image_id, box) of indexed persons
    upload_bodies: tuple[bytes, bytes]  # (JPEG, PNG), sent in turn
    upload_box: list[float]  # a box inside the downscaled upload
    huge_body: bytes
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict = field(default_factory=dict)  # kind -> list of seconds
    statuses: dict = field(default_factory=dict)  # kind -> {status: count}
    unexpected: list = field(default_factory=list)  # (kind, status, first 200 bytes)


def _client(port: int, shared: _Shared, n_requests: int, seed: int) -> None:
    rng = random.Random(seed)
    cycle = [kind for kind, weight in MIX.items() for _ in range(weight)]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    upload_id, uploads_sent = None, 0
    json_headers = {"Content-Type": "application/json"}
    for index in range(n_requests):
        if index % len(cycle) == 0:
            rng.shuffle(cycle)
        kind = cycle[index % len(cycle)]
        if kind in ("upload_get", "search_upload") and upload_id is None:
            kind = "upload"
        image_id = rng.choice(shared.images)
        box_image, box = rng.choice(shared.boxes)
        method, path, body, headers = "GET", "/api/info", None, {}
        if kind == "list":
            path = "/api/images?offset=0&limit=60"
        elif kind == "thumb":
            path = f"/api/images/{image_id}?max=200"
        elif kind == "image":
            path = f"/api/images/{image_id}"
        elif kind == "persons":
            path = f"/api/images/{image_id}/persons"
        elif kind == "search_person":
            method, path, headers = "POST", "/api/search", json_headers
            body = json.dumps({"person_id": rng.choice(shared.persons), "top": 10}).encode()
        elif kind == "search_box":
            method, path, headers = "POST", "/api/search", json_headers
            body = json.dumps({"image_id": box_image, "box": box, "top": 10}).encode()
        elif kind == "upload":
            body = shared.upload_bodies[uploads_sent % 2]
            method, path, headers = "POST", "/api/uploads", {"Content-Type": ("image/jpeg", "image/png")[uploads_sent % 2]}
            uploads_sent += 1
        elif kind == "upload_get":
            path = f"/api/uploads/{upload_id}"
        elif kind == "search_upload":
            method, path, headers = "POST", "/api/search", json_headers
            body = json.dumps({"upload_id": upload_id, "box": shared.upload_box, "top": 10}).encode()
        elif kind == "bad_host":
            headers = {"Host": "evil.example.com"}
        elif kind == "deep_json":
            method, path, headers = "POST", "/api/search", json_headers
            body = b"[" * 30_000 + b"]" * 30_000
        elif kind == "nan":
            method, path, headers = "POST", "/api/search", json_headers
            body = b'{"person_id": %d, "min_score": NaN}' % rng.choice(shared.persons)
        elif kind == "huge_png":
            method, path, body, headers = "POST", "/api/uploads", shared.huge_body, {"Content-Type": "image/png"}
        elif kind == "cross_site":
            method, path = "POST", "/api/search"
            headers = {"Content-Type": "text/plain", "Origin": "http://evil.example.com", "Sec-Fetch-Site": "cross-site"}
            body = json.dumps({"person_id": rng.choice(shared.persons)}).encode()
        start = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            status, data = f"error {type(error).__name__}", str(error).encode()
        elapsed = time.perf_counter() - start
        if kind == "upload" and status == 201:
            upload_id = json.loads(data)["upload_id"]
        expected = EXPECTED.get(kind, 200)
        with shared.lock:
            shared.latencies.setdefault(kind, []).append(elapsed)
            counts = shared.statuses.setdefault(kind, {})
            counts[str(status)] = counts.get(str(status), 0) + 1
            if status != expected:
                shared.unexpected.append((kind, status, data[:200].decode(errors="replace")))
            shared.done += 1
    connection.close()


def _percentiles(values: list[float]) -> dict:
    array = np.asarray(values) * 1000.0
    return {"count": int(array.size), "p50_ms": round(float(np.percentile(array, 50)), 2),
            "p99_ms": round(float(np.percentile(array, 99)), 2), "max_ms": round(float(array.max()), 2)}


def _prepare(port: int, upload_size: tuple[int, int]) -> _Shared:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(path: str) -> dict:
        connection.request("GET", path)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {data[:200]!r}")
        return json.loads(data)

    info = get("/api/info")
    if not info["box_queries"]:
        raise RuntimeError("the soak needs a server with the model (box queries)")
    images = [entry["id"] for entry in get("/api/images?limit=1000")["images"]]
    persons, boxes = [], []
    for image_id in images:
        for person in get(f"/api/images/{image_id}/persons")["persons"]:
            persons.append(person["person_id"])
            boxes.append((image_id, person["box"]))
    connection.close()
    if not persons:
        raise RuntimeError("the soak needs an index with persons")
    upload_bodies = (photo(upload_size, "JPEG"), photo(upload_size, "PNG"))
    return _Shared(images=images, persons=persons, boxes=boxes, upload_bodies=upload_bodies,
                   upload_box=[1.0, 1.0, 20.0, 30.0], huge_body=huge_declared_png())


def run_soak(server: ServerProcess, clients: int = 8, requests_per_client: int = 400,
             upload_size: tuple[int, int] = (4000, 3000), warmup_fraction: float = 0.2,
             sample_every_s: float = 0.2) -> dict:
    """Load ``server`` from ``clients`` threads, ``requests_per_client`` each; returns the report
    (see the module docstring). Stops by itself: a fixed number of requests, each with a
    client timeout of 120 s."""
    shared = _prepare(server.port, upload_size)
    upload_bodies = shared.upload_bodies
    memory_start = process_memory(server.pid)
    total = clients * requests_per_client
    samples: list[tuple[int, float]] = []  # (requests done, RSS MB)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((shared.done, process_memory(server.pid)["rss_mb"]))
            stop.wait(sample_every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    sampler.start()
    workers = [threading.Thread(target=_client, args=(server.port, shared, requests_per_client, seed), daemon=True)
               for seed in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    duration = time.perf_counter() - started
    stop.set()
    sampler.join()
    memory_end = process_memory(server.pid)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    connection.request("GET", "/api/info")
    upload_store = json.loads(connection.getresponse().read())["upload_store"]
    connection.close()
    samples.append((shared.done, memory_end["rss_mb"]))
    warm = [rss for done, rss in samples if done >= warmup_fraction * total]
    # RSS after the warm-up: the median over the next tenth of the requests (uploads being decoded
    # at that moment add transient peaks)
    window = [rss for done, rss in samples if warmup_fraction * total <= done <= (warmup_fraction + 0.1) * total]
    rss_after_warmup = float(np.median(window)) if window else memory_end["rss_mb"]
    progress = {}
    for decile in range(1, 11):  # RSS when 10 %, 20 %, ... of the requests were done
        progress[f"{decile * 10}%"] = round(next(rss for done, rss in samples if done >= decile * total / 10), 1)
    all_latencies = [value for values in shared.latencies.values() for value in values]
    return {
        "clients": clients, "requests": shared.done, "duration_s": round(duration, 2),
        "requests_per_s": round(shared.done / duration, 1),
        "upload": {"size": list(upload_size), "jpeg_bytes": len(upload_bodies[0]), "png_bytes": len(upload_bodies[1])},
        "latency": {"all": _percentiles(all_latencies),
                    **{kind: _percentiles(values) for kind, values in sorted(shared.latencies.items())}},
        "statuses": shared.statuses,
        "upload_store_end": upload_store,
        "unexpected": len(shared.unexpected), "unexpected_examples": shared.unexpected[:5],
        "server_memory": {"rss_mb_start": round(memory_start["rss_mb"], 1),
                          "rss_mb_after_warmup": round(rss_after_warmup, 1),
                          "rss_mb_end": round(memory_end["rss_mb"], 1),
                          "rss_mb_max_after_warmup": round(max(warm or [memory_end["rss_mb"]]), 1),
                          "peak_rss_mb": round(memory_end["peak_rss_mb"], 1),
                          "rss_mb_by_progress": progress,
                          "threads_start": memory_start["threads"], "threads_end": memory_end["threads"],
                          "open_files_start": memory_start["open_files"], "open_files_end": memory_end["open_files"]},
        "load_average_start": [round(v, 2) for v in load_before],
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }
