"""A short loopback soak of ``personsearch serve`` (search/soak.py) in its own process with a
real (tiny, random-weight) model: a few hundred requests from four concurrent clients, every
route, large uploads, refused requests. Asserts boundedness only, never timings: every answer
is the expected status, the server's memory after the warm-up does not grow with the uploads
(before the fix each 3000x2000 upload stayed in memory at full size, 18 MB, the last 16 of
them), and its threads and open files come back when the clients leave. The long run with its figures is
benchmarks/serve_soak.py."""

from __future__ import annotations

import http.client
import sys
import threading

import pytest

from personsearch.cli.main import main as cli
from personsearch.search.soak import ServerProcess, process_memory, run_soak

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's memory from /proc")


def test_short_soak_memory_stays_bounded(tmp_path, scene_dir, tiny_checkpoint):
    index = tmp_path / "idx"
    assert cli(["index", "build", str(tiny_checkpoint), str(scene_dir), "--out", str(index),
                "--min-score", "0", "--quiet"]) == 0
    with ServerProcess(index, ("--allowed-host", "photos.lan")) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request("GET", "/api/info", headers={"Host": "photos.lan:8000"})  # --allowed-host reaches the server
        assert connection.getresponse().status == 200
        connection.close()
        report = run_soak(server, clients=4, requests_per_client=48, upload_size=(3000, 2000))
        assert report["requests"] == 192
        assert report["unexpected"] == 0, report["unexpected_examples"]
        assert report["statuses"]["upload"] == {"201": report["latency"]["upload"]["count"]}
        assert report["latency"]["upload"]["count"] >= 8  # 6 Mpixel JPEGs and PNGs
        memory = report["server_memory"]
        # the uploads after the warm-up (6 or more) would add 108 MB or more if kept at full size;
        # the allocator's own variation between two samples stays well below 60 MB
        assert memory["rss_mb_end"] - memory["rss_mb_after_warmup"] < 60, memory
        store = report["upload_store_end"]
        assert 0 < store["bytes"] <= store["max_bytes"] == 128 * 2**20 and store["uploads"] >= 8
        for _ in range(400):  # the handler threads end once the clients have closed their connections
            now = process_memory(server.pid)
            if now["threads"] <= memory["threads_start"] and now["open_files"] <= memory["open_files_start"]:
                break
            threading.Event().wait(0.05)
        assert now["threads"] <= memory["threads_start"] and now["open_files"] <= memory["open_files_start"], now


@pytest.mark.parametrize("flag", ["--max-upload-mpixels", "--upload-store-mb", "--request-timeout", "--max-upload-mb"])
def test_serve_refuses_non_positive_limits(tmp_path, capsys, flag):
    assert cli(["serve", str(tmp_path / "idx"), flag, "0"]) == 2  # checked before the index is opened
    assert f"{flag} must be a positive number, got 0.0" in capsys.readouterr().err
