"""Search your own images: a persistent gallery index (SQLite + faiss), queries, a results
picture and a small web page. See docs/search.md.

store.py   GalleryStore: SQLite metadata + embeddings (truth), faiss cache (vectors.py)
build.py   Embedder protocol, ModelEmbedder over PersonSearchModel, build_index (incremental)
query.py   parse_box, rank, search_with_file / search_with_image / search_with_person
render.py  render_results: query crop beside the top-K gallery images
server.py  SearchApp + make_server: the JSON API and the page in static/
http_checks.py  the server's request checks (Host allow-list, same origin, content types, JSON limits)
uploads.py decode_upload (pixel limit before decoding, downscaling) + UploadStore (bounded in bytes)
soak.py    run_soak: loopback load of ``personsearch serve`` (tests/search/test_soak.py, benchmarks/serve_soak.py)
"""
