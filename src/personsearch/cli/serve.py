"""``personsearch serve INDEX [--host 127.0.0.1] [--port 8000] [--checkpoint CKPT] [--allowed-host NAME]``

Serves the search page: pick or upload a query image, draw a box, see the ranked hits, click a
hit to search from it. Box queries need the model: ``--checkpoint``, or by default the
checkpoint the index was built with when that file still exists (its fingerprint must match).
Without a model, searching from detected persons still works. JSON API and the server's limits:
docs/search.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", help="index folder (personsearch index build)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="also answer requests whose Host header names NAME (repeatable; the bind address, "
                             "localhost, 127.0.0.1 and ::1 always are). Needed for the name or address clients "
                             "use when --host is 0.0.0.0")
    parser.add_argument("--checkpoint", default=None, help="model for box queries (default: the index's checkpoint)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0, help="upload size limit (default 20 MB)")
    parser.add_argument("--max-upload-mpixels", type=float, default=24.0,
                        help="largest upload in declared pixels, checked before decoding (default 24 Mpixel)")
    parser.add_argument("--upload-store-mb", type=float, default=128.0,
                        help="memory for uploaded images; the oldest are dropped beyond it (default 128 MB)")
    parser.add_argument("--request-timeout", type=float, default=30.0,
                        help="seconds a client may take to send a request, headers and body (default 30)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                        help="inference path of box queries (default auto: measured once per machine and "
                             "model; docs/precision.md)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def _positive(value: float, flag: str) -> float:
    from personsearch.errors import PersonSearchError

    if not value > 0 or value != value or value == float("inf"):
        raise PersonSearchError(f"{flag} must be a positive number, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from personsearch.errors import PersonSearchError
    from personsearch.search.build import check_embedder, load_embedder
    from personsearch.search.server import HttpLimits, SearchApp, make_server
    from personsearch.search.store import GalleryStore

    max_upload_mb = _positive(args.max_upload_mb, "--max-upload-mb")
    max_mpixels = _positive(args.max_upload_mpixels, "--max-upload-mpixels")
    store_mb = _positive(args.upload_store_mb, "--upload-store-mb")
    timeout = _positive(args.request_timeout, "--request-timeout")
    store = GalleryStore.open(args.index)
    store.vector_index()  # load (or rebuild) the vectors before the first request
    embedder = None
    checkpoint = args.checkpoint or store.settings.checkpoint
    if args.checkpoint is not None or Path(checkpoint).is_file():
        embedder = load_embedder(checkpoint, store.settings.min_size, store.settings.max_size, device=args.device,
                                 precision=args.precision)
        check_embedder(store, embedder, checkpoint)
    else:
        print(f"note: checkpoint {checkpoint} not found: box queries are off (pass --checkpoint)", file=sys.stderr)
    app = SearchApp(store, embedder, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                    max_upload_pixels=int(max_mpixels * 1e6), upload_store_bytes=int(store_mb * 1024 * 1024))
    limits = HttpLimits(request_timeout_s=timeout, write_timeout_s=timeout)
    try:
        server = make_server(app, args.host, args.port, verbose=args.verbose, allowed_hosts=args.allowed_host,
                             limits=limits)
    except OSError as error:
        raise PersonSearchError(f"cannot listen on {args.host}:{args.port} ({error.strerror or error})") from None
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can search the index", file=sys.stderr)
    print(f"answering Host names: {', '.join(sorted(server.allowed_hosts))}", file=sys.stderr)
    print(f"serving {args.index} on http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
    return 0
