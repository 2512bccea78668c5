"""``personsearch search``: find a person in an indexed gallery.

    personsearch search INDEX --query IMAGE --box x1,y1,x2,y2 [--top K] [--min-score S]
                        [--out DIR] [--json] [--checkpoint CKPT] [--weighting score|cosine]
    personsearch search INDEX --query-index PERSON_ID [...]
    personsearch search INDEX --photo PERSON.jpg [--photo ANOTHER.jpg ...] [--photo-box auto|whole|largest]

``--photo``: a photo of the person (the whole image is the box, or the largest detection when
the photo has background; the output says which); several ``--photo`` average their unit
embeddings (search/photo.py). Video frames in the results show the video and time code.

Prints the ranked hits as a table (or JSON with ``--json``); with ``--out DIR`` also writes
DIR/results.json and DIR/results.png (query crop beside the top-K gallery images).
The model is the index's checkpoint unless ``--checkpoint`` is given; it must have the
fingerprint the index was built with.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from personsearch.atomic import atomic_write_text
from personsearch.cli import finite_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", help="index folder (personsearch index build)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="query image file")
    source.add_argument("--query-index", type=int, metavar="PERSON_ID",
                        help="search with a person already in the index (its id from results / the web page)")
    source.add_argument("--photo", action="append", metavar="PHOTO",
                        help="a photo of the person (repeat for several photos of the same person: their "
                             "embeddings are averaged)")
    parser.add_argument("--photo-box", choices=("auto", "whole", "largest"), default="auto",
                        help="the person's box in each --photo: auto (default) = the largest detection, or the "
                             "whole image when nothing is detected or the detection covers half of it; whole; largest")
    parser.add_argument("--box", help="query box x1,y1,x2,y2 in pixels of --query")
    parser.add_argument("--top", type=int, default=10, help="number of hits (default 10)")
    parser.add_argument("--min-score", type=finite_float, default=0.0, help="ignore gallery detections below this score")
    parser.add_argument("--weighting", choices=("score", "cosine"), default="score",
                        help="rank by cosine x detection score (default, SeqNet) or plain cosine")
    parser.add_argument("--keep-query-image", action="store_true",
                        help="do not leave the query's own image (if indexed) out of the results")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the one the index was built with)")
    parser.add_argument("--out", default=None, help="write results.json and results.png here")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--device", default="cpu")


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))


def _embedder(store, args: argparse.Namespace):
    """The index's model (or --checkpoint's), checked to be the one the index was built with."""
    from personsearch.errors import PersonSearchError
    from personsearch.search.build import check_embedder, load_embedder

    checkpoint = args.checkpoint or store.settings.checkpoint
    if not Path(checkpoint).is_file():
        raise PersonSearchError(f"{checkpoint}: checkpoint not found (the index was built with it; pass --checkpoint)")
    embedder = load_embedder(checkpoint, store.settings.min_size, store.settings.max_size, device=args.device)
    check_embedder(store, embedder, checkpoint)
    return embedder


def run(args: argparse.Namespace) -> int:
    from personsearch.data.transforms import load_image
    from personsearch.errors import PersonSearchError
    from personsearch.search.gallery_images import load_gallery_image
    from personsearch.search.query import parse_box, search_with_file, search_with_person
    from personsearch.search.store import GalleryStore

    if args.top < 1:
        raise PersonSearchError(f"--top must be >= 1, got {args.top}")
    options = {"top_k": args.top, "weighting": args.weighting, "min_score": args.min_score,
               "exclude_query_image": not args.keep_query_image}
    with GalleryStore.open(args.index, readonly=False) as store:
        images_root = store.settings.images_root
        if args.box is not None and args.query is None:
            raise PersonSearchError("--box goes with --query, not with --query-index or --photo")
        if args.query is not None:
            if args.box is None:
                raise PersonSearchError("--query needs --box x1,y1,x2,y2")
            box = parse_box(args.box)
            embedder = _embedder(store, args)
            result = search_with_file(store, embedder, args.query, box, **options)
            query_image = load_image(args.query)
        elif args.photo:
            from personsearch.search.photo import load_photo, search_with_photos

            photos = [load_photo(path) for path in args.photo]
            result = search_with_photos(store, _embedder(store, args), photos, box_mode=args.photo_box, **options)
            query_image = photos[0].image
            result.query["box"] = result.query["photos"][0]["box"]  # the picture shows the first photo
        else:
            result = search_with_person(store, args.query_index, **options)
            query_image = load_gallery_image(store, images_root, result.query["image_id"])
        data = result.to_json()
        if args.out:
            from personsearch.search.render import render_results

            out = Path(args.out)
            _write_json(out / "results.json", data)
            render_results(result, query_image, images_root, out / "results.png",
                           gallery_image=lambda image_id: load_gallery_image(store, images_root, image_id))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for photo in result.query.get("photos", []):
            print(f"photo {photo['photo']}: box {','.join(f'{v:.0f}' for v in photo['box'])} = {photo['box_source']}")
        print(result.table())
        if args.out:
            print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'results.png'}")
    return 0
