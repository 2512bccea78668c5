"""Search over video files, measured on the synthetic videos (issue 14 item 4): indexing throughput
and, per person, how many of the frames showing that person a photo query ranks in the top 10.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/video_search.py CHECKPOINT [--data out/synth_video]
        [--every 1] [--threads 2] [--top 10] [--screenshot docs/search_video_page.png] [--json-out FILE]

1. ``--data`` holds ``personsearch data synth --video`` output (written when missing: 2 cameras,
   4 identities, 30 s at 10 fps, 640x360, seed 0).
2. A new index of ``DATA/videos`` is built with ``personsearch.search.build.build_index`` (one frame
   every ``--every`` seconds) with ``--threads`` torch threads. Timed: the build call (hashing,
   decoding, detection + embedding, storing), model loading excluded; decoding alone is timed
   separately. Throughput: indexed frames per wall second and video seconds per wall second.
3. Quality, two queries per identity: its photo (``DATA/photos``, the person in front of a third
   camera's scene; box chosen as ``search --photo`` does), and its true box in the first camera's
   frame where it is fully visible and nearest the middle (that frame itself left out of the
   results). Each ranks the whole index (score-weighted similarity). A hit is
   correct when its box overlaps that person's true box in that frame with IoU >= 0.5. Per person:
   ``frames_showing`` (indexed frames where the person is visible), ``correct_in_top`` (distinct
   correct frames among the top ``--top`` hits), ``recall_at_top`` = correct_in_top /
   frames_showing (the issue's "fraction of frames showing that person ranked in the top 10"; it
   cannot exceed top / frames_showing), ``precision_at_top`` = correct hits / top, and
   ``found_of_possible`` = correct_in_top / min(top, frames_showing).
4. ``--screenshot PNG``: the web page after uploading the first person's photo and searching with
   it (hits with video names and time codes), in headless Chromium.

Prints one JSON object (also written to ``--json-out``), with the CPU model, torch threads and the
load average before and after (a loaded machine slows the throughput figures; label them so).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_model  # benchmarks/timing.py, beside this script

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def truth_box(truth: dict, video: str, seconds: float, person: int) -> list[float] | None:
    """The person's true box (clipped to the frame) in the frame of ``video`` at ``seconds``."""
    frames = truth["videos"][Path(video).name]["frames"]
    record = frames[int(round(seconds * truth["fps"]))]
    for entry in record["persons"]:
        if entry["id"] == person:
            x1, y1, x2, y2 = entry["box"]
            return [max(0, x1), max(0, y1), min(truth["width"], x2), min(truth["height"], y2)]
    return None


def person_quality(hits, truth: dict, person: int, indexed: list[tuple[str, float]], top: int) -> dict:
    showing = sum(truth_box(truth, video, seconds, person) is not None for video, seconds in indexed)
    correct_frames, correct_hits, per_camera = set(), 0, {}
    for hit in hits[:top]:
        box = truth_box(truth, hit.video, hit.seconds, person)
        if box is not None and iou(box, hit.box) >= 0.5:
            correct_hits += 1
            correct_frames.add((hit.video, hit.seconds))
            per_camera[hit.video] = per_camera.get(hit.video, 0) + 1
    return {"person": person, "frames_showing": showing, "correct_in_top": len(correct_frames),
            "recall_at_top": round(len(correct_frames) / showing, 4) if showing else None,
            "precision_at_top": round(correct_hits / top, 4),
            "found_of_possible": round(len(correct_frames) / min(top, showing), 4) if showing else None,
            "correct_hits_per_video": per_camera}


def box_query(truth: dict, videos: Path, person: int):
    """(RGB frame, true box, name) of the person in the first video, fully visible, nearest the middle."""
    from personsearch.search.video import Sampling, sampled_frames

    name = sorted(truth["videos"])[0]
    best = None
    for record in truth["videos"][name]["frames"]:
        for entry in record["persons"]:
            x1, _, x2, _ = entry["box"]
            if entry["id"] == person and entry["visible"] >= 1.0 and x1 >= 0 and x2 <= truth["width"]:
                offset = abs((x1 + x2) / 2 - truth["width"] / 2)
                if best is None or offset < best[0]:
                    best = (offset, record["frame"], entry["box"])
    if best is None:
        return None
    for frame in sampled_frames(videos / name, Sampling(every_s=1.0 / truth["fps"])):
        if int(round(frame.seconds * truth["fps"])) == best[1]:
            return frame.rgb, best[2], f"{name}@{frame.seconds:.1f}s"
    raise SystemExit(f"{name}: frame {best[1]} not found")


def decode_seconds(videos: Path, sampling) -> float:
    from personsearch.search.video import sampled_frames

    start = time.perf_counter()
    for path in sorted(videos.iterdir()):
        for _ in sampled_frames(path, sampling):
            pass
    return time.perf_counter() - start


def screenshot(store, embedder, photo: Path, png: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from personsearch.search.server import SearchApp, make_server

    server = make_server(SearchApp(store, embedder), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            # waits on the state app.js reports on <body>, never on timing
            page.wait_for_selector("body[data-info='ready'][data-gallery='ready']", state="attached")
            page.set_input_files("#upload", str(photo))
            page.wait_for_selector("body[data-query='ready'][data-query-source^='upload:']", state="attached")
            page.click("#photo-search")
            page.wait_for_selector("body[data-searches='1'][data-search='done']", state="attached")
            time_codes = [card.get_attribute("data-time-code") for card in page.locator(".hit").all()]
            photo_box = page.get_attribute("body", "data-photo-box")
            png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(png), full_page=True)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {"screenshot": str(png), "photo": photo.name, "photo_box": photo_box, "hit_time_codes": time_codes}


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from personsearch.search.build import build_index, load_embedder
    from personsearch.search.build_video import frame_sha256
    from personsearch.search.photo import load_photo, search_with_photos
    from personsearch.search.query import search_with_image
    from personsearch.search.store import GalleryStore
    from personsearch.search.video import Sampling

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=str(REPO / "out" / "synth_video"))
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "out" / "video_search"), help="index folder (rebuilt)")
    parser.add_argument("--screenshot", default=None)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "ground_truth.json").is_file():
        from personsearch.data.synth.video import generate_videos

        generate_videos(data, seed=0, cameras=2, identities=4, seconds=30.0, fps=10, progress=True)
    truth = json.loads((data / "ground_truth.json").read_text())
    sampling = Sampling(every_s=args.every)
    index = Path(args.out)
    shutil.rmtree(index, ignore_errors=True)

    load_before = os.getloadavg()
    embedder = load_embedder(args.checkpoint)
    report = build_index(index, embedder, data / "videos", checkpoint=str(Path(args.checkpoint).resolve()),
                         sampling=sampling, progress=False)
    decoding = decode_seconds(data / "videos", sampling)
    load_after = os.getloadavg()
    if report.video_errors:
        raise SystemExit("unreadable videos: " + "; ".join(report.video_errors))

    qualities, box_qualities = [], []
    with GalleryStore.open(index) as store:
        indexed = []
        for row in store.images(0, 10**6):
            frame = store.frame(row.id)
            indexed.append((frame.video, frame.seconds))
        for name, photo_truth in sorted(truth["photos"].items()):
            photo = load_photo(data / "photos" / name)
            result = search_with_photos(store, embedder, [photo], top_k=args.top)
            quality = person_quality(result.hits, truth, photo_truth["id"], indexed, args.top)
            quality["photo_box"] = result.query["photos"][0]["box_source"]
            qualities.append(quality)
            query = box_query(truth, data / "videos", photo_truth["id"])
            if query is not None:
                rgb, box, where = query
                result = search_with_image(store, embedder, rgb, np.asarray(box, np.float32), where=where,
                                           image_sha256=frame_sha256(rgb), top_k=args.top)
                quality = person_quality(result.hits, truth, photo_truth["id"], indexed, args.top)
                quality["query_frame"] = where
                box_qualities.append(quality)
        shot = (screenshot(store, embedder, data / "photos" / sorted(truth["photos"])[0], Path(args.screenshot))
                if args.screenshot else None)

    def summary(rows: list[dict]) -> dict:
        out = {"top": args.top}
        for key in ("recall_at_top", "precision_at_top", "found_of_possible"):
            values = [q[key] for q in rows if q[key] is not None]
            out[f"mean_{key}"] = round(sum(values) / len(values), 4) if values else None
        return {**out, "per_person": rows}

    output = {
        "benchmark": "video_search",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "model_fingerprint": embedder.fingerprint[:12],
        "data": {"folder": str(data), "videos": len(truth["videos"]), "fps": truth["fps"],
                 "seconds_per_video": truth["seconds"], "size": [truth["width"], truth["height"]],
                 "identities": len(truth["identities"])},
        "sampling": sampling.key,
        "preprocessing": {"min_size": embedder.min_size, "max_size": embedder.max_size},
        "cpu": cpu_model(), "torch_threads": torch.get_num_threads(),
        "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "indexing": {
            "frames": report.frames_added, "persons": report.persons_added,
            "video_seconds": round(report.video_seconds, 3), "wall_seconds": round(report.seconds, 3),
            "frames_per_second": round(report.frames_added / report.seconds, 3),
            "video_seconds_per_wall_second": round(report.video_seconds / report.seconds, 3),
            "decoding_only_wall_seconds": round(decoding, 3),
        },
        "quality_photo_query": summary(qualities),
        "quality_frame_box_query": summary(box_qualities),
        "screenshot": shot,
    }
    text = json.dumps(output, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
