"""Query a gallery index: a query person (an image + a box, or a person already in the index)
-> ranked gallery persons.

Similarity. ``weighting="score"`` (default) ranks by cosine x detection score, SeqNet's
confidence-weighted similarity (its gallery features are multiplied by the detection score, so
a confident detection outranks a doubtful one with the same appearance); ``"cosine"`` ranks by
the plain cosine of the unit embeddings. faiss holds the unit embeddings; the weighted ranking is
made exact by retrieving cosine candidates until the k-th weighted similarity is at least the
largest weighted similarity any unretrieved person could have (its cosine is at most the last
candidate's cosine and the score is at most 1).

Shapes
------
query_embedding  float32 [D] unit norm;  box  float32 [4] x1y1x2y2 original pixels
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from personsearch.errors import PersonSearchError
from personsearch.search.store import GalleryStore
from personsearch.search.video import time_code

WEIGHTINGS = ("score", "cosine")


@dataclass(frozen=True)
class Hit:
    rank: int
    person_id: int
    image_id: int
    image: str  # path relative to the indexed folder
    box: list[float]
    score: float  # detection score
    cosine: float
    similarity: float  # what the ranking uses
    video: str | None = None  # a video frame: the video (relative to the indexed folder)
    seconds: float | None = None  # ... and the frame's time in it
    time_code: str | None = None  # ... as hh:mm:ss.mmm


@dataclass
class SearchResult:
    query: dict
    hits: list[Hit] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"query": self.query, "hits": [asdict(hit) for hit in self.hits]}

    def table(self) -> str:
        lines = [f"{'rank':>4}  {'similarity':>10}  {'cosine':>7}  {'score':>5}  {'person':>7}  box (x1,y1,x2,y2)           "
                 "image (or video  time code)"]
        for hit in self.hits:
            box = ",".join(f"{v:.0f}" for v in hit.box)
            where = hit.image if hit.video is None else f"{hit.video}  {hit.time_code}"
            lines.append(f"{hit.rank:>4}  {hit.similarity:>10.4f}  {hit.cosine:>7.4f}  {hit.score:>5.2f}  "
                         f"{hit.person_id:>7}  {box:<27}  {where}")
        if not self.hits:
            lines.append("  (no hits)")
        return "\n".join(lines)


def parse_box(text: str) -> np.ndarray:
    """'x1,y1,x2,y2' -> float32 [4]; PersonSearchError on bad syntax or an empty box."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(np.isfinite(values)):
        raise PersonSearchError(f"bad box {text!r}: expected four numbers x1,y1,x2,y2")
    box = np.asarray(values, dtype=np.float32)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise PersonSearchError(f"bad box {text!r}: needs x2 > x1 and y2 > y1")
    return box


def check_box_in_image(box: np.ndarray, width: int, height: int, where: str) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise PersonSearchError(f"{where}: empty query box {x1:g},{y1:g},{x2:g},{y2:g}")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise PersonSearchError(
            f"{where}: query box {x1:g},{y1:g},{x2:g},{y2:g} is outside the image ({width}x{height})"
        )


def rank(
    store: GalleryStore,
    query_embedding: np.ndarray,
    top_k: int = 10,
    weighting: str = "score",
    min_score: float = 0.0,
    exclude_image_ids: set[int] | frozenset[int] = frozenset(),
) -> list[Hit]:
    """The ``top_k`` gallery persons by similarity (see the module docstring)."""
    if weighting not in WEIGHTINGS:
        raise PersonSearchError(f"unknown weighting {weighting!r} (choose from {', '.join(WEIGHTINGS)})")
    if top_k < 1:
        raise PersonSearchError(f"top must be >= 1, got {top_k}")
    query = np.asarray(query_embedding, dtype=np.float32).reshape(1, -1)
    if query.shape[1] != store.settings.embedding_dim:
        raise PersonSearchError(f"query embedding has dim {query.shape[1]}, index {store.settings.embedding_dim}")
    total = store.vector_index().ntotal
    if total == 0:
        return []
    want = min(total, max(4 * top_k, 64))
    while True:
        sims, ids = store.search(query, want)
        sims, ids = sims[0], ids[0]
        valid = ids >= 0
        sims, ids = sims[valid], ids[valid]
        rows = store.persons(ids.tolist())
        candidates = []
        for cosine, person_id in zip(sims.tolist(), ids.tolist()):
            row = rows.get(int(person_id))
            if row is None or row.image_id in exclude_image_ids or row.score < min_score:
                continue
            similarity = cosine * row.score if weighting == "score" else cosine
            candidates.append((similarity, cosine, row))
        candidates.sort(key=lambda c: (-c[0], c[2].id))
        exhausted = want >= total
        if exhausted or len(candidates) >= top_k:
            last_cosine = float(sims[-1]) if len(sims) else -1.0
            bound = max(last_cosine, 0.0) if weighting == "score" else last_cosine
            if exhausted or candidates[top_k - 1][0] >= bound:
                break
        want = min(total, want * 4)
    image_rows, frame_rows = {}, {}
    hits = []
    for position, (similarity, cosine, row) in enumerate(candidates[:top_k], start=1):
        if row.image_id not in image_rows:
            image_rows[row.image_id] = store.image(row.image_id)
            frame_rows[row.image_id] = store.frame(row.image_id)
        frame = frame_rows[row.image_id]
        hits.append(Hit(
            rank=position, person_id=row.id, image_id=row.image_id, image=image_rows[row.image_id].rel_path,
            box=[round(float(v), 2) for v in row.box], score=round(row.score, 6),
            cosine=round(float(cosine), 6), similarity=round(float(similarity), 6),
            video=None if frame is None else frame.video,
            seconds=None if frame is None else round(frame.seconds, 6),
            time_code=None if frame is None else time_code(frame.seconds),
        ))
    return hits


def search_with_image(
    store: GalleryStore,
    embedder,
    image: np.ndarray,
    box: np.ndarray,
    *,
    where: str = "query image",
    image_sha256: str | None = None,
    top_k: int = 10,
    weighting: str = "score",
    min_score: float = 0.0,
    exclude_query_image: bool = True,
) -> SearchResult:
    """Embed ``box`` of ``image`` with the model and rank the gallery. When the query image is
    itself indexed (same sha256) it is left out of the ranking unless ``exclude_query_image``
    is False (person search protocols never return the query's own image)."""
    height, width = image.shape[:2]
    check_box_in_image(box, width, height, where)
    embedding = embedder.embed(image, np.asarray(box, np.float32)[None])[0]
    excluded = set(store.image_ids_with_sha(image_sha256)) if (image_sha256 and exclude_query_image) else set()
    hits = rank(store, embedding, top_k, weighting, min_score, excluded)
    query = {"image": where, "box": [float(v) for v in box], "width": width, "height": height,
             "excluded_image_ids": sorted(excluded), "weighting": weighting}
    return SearchResult(query, hits)


def search_with_file(store: GalleryStore, embedder, image_path: str | Path, box: np.ndarray, **kwargs) -> SearchResult:
    from personsearch.data.transforms import load_image

    image_path = Path(image_path)
    image = load_image(image_path)  # DatasetError (a PersonSearchError) naming the file
    digest = hashlib.sha256(image_path.read_bytes()).hexdigest()
    return search_with_image(store, embedder, image, box, where=str(image_path), image_sha256=digest, **kwargs)


def search_with_person(
    store: GalleryStore,
    person_id: int,
    *,
    top_k: int = 10,
    weighting: str = "score",
    min_score: float = 0.0,
    exclude_query_image: bool = True,
) -> SearchResult:
    """Rank the gallery against a person already in the index (its stored embedding)."""
    rows = store.persons([int(person_id)])
    if int(person_id) not in rows:
        raise PersonSearchError(f"{store.root}: no person with id {person_id} in the index")
    row = rows[int(person_id)]
    embedding = store.person_embedding(row.id)
    excluded = {row.image_id} if exclude_query_image else {-1}
    hits = [h for h in rank(store, embedding, top_k + (0 if exclude_query_image else 1), weighting, min_score,
                            excluded) if h.person_id != row.id][:top_k]
    hits = [Hit(**{**asdict(h), "rank": i}) for i, h in enumerate(hits, start=1)]
    image = store.image(row.image_id)
    query = {"person_id": row.id, "image_id": row.image_id, "image": image.rel_path,
             "box": [float(v) for v in row.box], "width": image.width, "height": image.height,
             "excluded_image_ids": sorted(excluded - {-1}), "weighting": weighting}
    frame = store.frame(row.image_id)
    if frame is not None:
        query.update(video=frame.video, seconds=round(frame.seconds, 6), time_code=time_code(frame.seconds))
    return SearchResult(query, hits)
