"""Figures of the SSL paper reproduced from our runs: pseudo-label precision/recall per epoch
(Fig. 4) and a 2-D embedding of test features coloured by identity, marker by person height
(Fig. 7) (matplotlib with the Agg backend, no display); and the search results sheet of
``make demo`` (queries drawn at random, each with its top gallery hits; PIL).

Shape glossary (results sheet)
------------------------------
M   gallery detections;  D  feature dimension;  Q  queries
detections.feats [M, D], detections.boxes [M, 4] x1y1x2y2 original pixels, query_feats [Q, D]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_diagnostics(metrics_file: Path) -> list[dict[str, Any]]:
    """The per-epoch ``pseudo_label_diagnostics`` records of a run's metrics.jsonl."""
    if not Path(metrics_file).is_file():
        return []
    records = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("type") == "pseudo_label_diagnostics"]


def pseudo_label_figure(runs: dict[str, Path], out: Path) -> Path:
    """Precision (left) and recall (right) per epoch: for every run its DML labels (solid) and
    its cluster labels (dashed) where it logged them."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, metrics_file in runs.items():
        records = read_diagnostics(metrics_file)
        if not records:
            continue
        epochs = [r["epoch"] for r in records]
        for kind, style in (("dml", "-"), ("cluster", "--"), ("", ":")):
            prefix = f"diag/{kind}_" if kind else "diag/"
            if f"{prefix}precision" not in records[0]:
                continue
            label = f"{name} ({kind or 'labels'})"
            axes[0].plot(epochs, [r[f"{prefix}precision"] for r in records], style, marker="o", label=label)
            axes[1].plot(epochs, [r[f"{prefix}recall"] for r in records], style, marker="o", label=label)
    for axis, title in zip(axes, ("pseudo-label precision", "pseudo-label recall")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def test_embeddings(checkpoint: Path, cfg, max_identities: int = 12) -> dict[str, np.ndarray]:
    """Embeddings of the labelled gallery GT boxes of the first identities of the test split:
    feats [n, D], ids [n], heights [n] (original pixels)."""
    import torch

    from personsearch.data import load_split
    from personsearch.data.transforms import batch_images, load_image, preprocess
    from personsearch.engine.checkpoint import load_model

    fmt = cfg.eval.format or cfg.data.format
    root = cfg.eval.root or cfg.data.root
    gallery = load_split(fmt, root, "gallery")
    labelled = sorted({int(i) for r in gallery for i in r.person_ids if i >= 0})
    chosen = set(labelled[:max_identities])
    model, _ = load_model(checkpoint)
    feats, ids, heights = [], [], []
    for record in gallery:
        keep = [k for k, pid in enumerate(record.person_ids) if int(pid) in chosen]
        if not keep:
            continue
        tensor, scale = preprocess(load_image(record.image_path), cfg.eval.min_size, cfg.eval.max_size)
        images, sizes = batch_images([tensor])
        boxes = torch.tensor(record.boxes[keep], dtype=torch.float32) * scale
        (embeddings,) = model.embed_boxes(images, sizes, [boxes])
        feats.append(embeddings.numpy())
        ids.extend(int(record.person_ids[k]) for k in keep)
        heights.extend(float(record.boxes[k, 3] - record.boxes[k, 1]) for k in keep)
    return {"feats": np.concatenate(feats) if feats else np.zeros((0, model.embedding_dim)),
            "ids": np.asarray(ids), "heights": np.asarray(heights)}


def embedding_figure(checkpoints: dict[str, Path], cfg, out: Path) -> Path:
    """One panel per checkpoint: t-SNE of test embeddings, colour = identity, marker = height
    tercile (small / medium / large persons)."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(checkpoints), figsize=(5.5 * len(checkpoints), 5), squeeze=False)
    markers = ["v", "o", "s"]
    for axis, (name, checkpoint) in zip(axes[0], checkpoints.items()):
        data = test_embeddings(checkpoint, cfg)
        if len(data["feats"]) < 5:
            axis.set_title(f"{name}: too few test persons")
            continue
        points = TSNE(n_components=2, perplexity=min(30.0, len(data["feats"]) / 4), init="pca",
                      random_state=0).fit_transform(data["feats"])
        cuts = np.quantile(data["heights"], [1 / 3, 2 / 3])
        bucket = np.digitize(data["heights"], cuts)
        colours = {pid: plt.cm.tab20(i % 20) for i, pid in enumerate(sorted(set(data["ids"].tolist())))}
        for b, marker in enumerate(markers):
            mask = bucket == b
            axis.scatter(points[mask, 0], points[mask, 1], c=[colours[i] for i in data["ids"][mask]],
                         marker=marker, s=28, edgecolors="k", linewidths=0.3,
                         label=["small", "medium", "large"][b])
        axis.set_title(f"{name}: colour = identity, marker = height")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(fontsize=7)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


# ------------------------------------------------------------------ search results sheet
#: Colours of the results sheet: the query person (green), anything else (red).
HIT_COLOUR = (0, 170, 0)
MISS_COLOUR = (210, 0, 0)


@dataclass(frozen=True)
class RankedHit:
    """One gallery hit of a query: the frame, the detection box (original pixels), its
    similarity to the query and whether it is the query person (the PRW protocol's test:
    same identity, IoU >= min(0.5, wh / ((w+10)(h+10))) with its GT box)."""

    image_path: str
    box: np.ndarray
    similarity: float
    correct: bool


def sample_queries(num_queries: int, count: int, seed: int) -> list[int]:
    """``count`` query indices drawn without replacement from all ``num_queries`` with a
    generator seeded by ``seed`` (sorted), whatever the results: the sheet shows successes
    and failures in the proportions the model makes them."""
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(num_queries, size=min(count, num_queries), replace=False))


def ranked_hits(query_index: int, queries, gallery, detections, query_feats: np.ndarray,
                top: int, det_thresh: float = 0.5) -> list[RankedHit]:
    """The ``top`` best gallery frames of a query as the evaluation ranks them: detections with
    score >= ``det_thresh`` of every frame but the query's, by similarity (gallery features ·
    query feature); each frame once, at its best detection."""
    from personsearch.evaluation.search import pairwise_iou, size_adaptive_iou_threshold

    query = queries[query_index]
    person = int(query.person_ids[0])
    image_of = np.repeat(np.arange(len(gallery)), np.diff(detections.image_offsets))
    similarity = detections.feats @ query_feats[query_index]
    keep = (detections.scores >= det_thresh) & np.array(
        [gallery[g].image_name != query.image_name for g in image_of], dtype=bool)
    hits: list[RankedHit] = []
    seen: set[int] = set()
    for det in np.argsort(-similarity, kind="stable"):
        if not keep[det] or int(image_of[det]) in seen:
            continue
        seen.add(int(image_of[det]))
        record = gallery[image_of[det]]
        match = np.flatnonzero(np.asarray(record.person_ids) == person)
        correct = False
        if match.size:
            truth = np.asarray(record.boxes[match[0]], dtype=np.float64)
            threshold = size_adaptive_iou_threshold(np.array([int(truth[2] - truth[0])]),
                                                    np.array([int(truth[3] - truth[1])]))[0]
            correct = float(pairwise_iou(detections.boxes[det][None], truth[None])[0]) >= threshold
        hits.append(RankedHit(str(record.image_path), detections.boxes[det].astype(np.float64),
                              float(similarity[det]), bool(correct)))
        if len(hits) == top:
            break
    return hits


def _context_crop(image, box: np.ndarray, height: int, colour: tuple[int, int, int]):
    """The box with as much context again around it (clipped to the image), resized to
    ``height`` px high, the box drawn in ``colour``."""
    from PIL import ImageDraw

    x1, y1, x2, y2 = (float(v) for v in box)
    pad_x, pad_y = max(x2 - x1, 8.0), 0.25 * max(y2 - y1, 8.0)
    left, top = max(0.0, x1 - pad_x), max(0.0, y1 - pad_y)
    right, bottom = min(float(image.width), x2 + pad_x), min(float(image.height), y2 + pad_y)
    crop = image.crop((int(left), int(top), max(int(left) + 1, int(right)), max(int(top) + 1, int(bottom))))
    scale = height / crop.height
    tile = crop.resize((max(1, round(crop.width * scale)), height))
    ImageDraw.Draw(tile).rectangle([(x1 - int(left)) * scale, (y1 - int(top)) * scale,
                                    (x2 - int(left)) * scale, (y2 - int(top)) * scale],
                                   outline=colour, width=3)
    return tile


def search_results_sheet(queries, gallery, detections, query_feats: np.ndarray,
                         query_indices: Sequence[int], caption: Sequence[str], out: Path,
                         top: int = 5, tile_height: int = 150) -> Path:
    """A PNG with one row per query: the query crop, then its ``top`` ranked gallery hits,
    each labelled with its rank and similarity and framed green (the query person) or red;
    ``caption`` lines on top. Written atomically."""
    from PIL import Image, ImageDraw, ImageFont

    from personsearch.atomic import atomic_open
    from personsearch.data.transforms import load_image

    font = ImageFont.load_default(size=14)
    label_height, gap, border = 20, 10, 4
    rows = []
    for q in query_indices:
        query = queries[q]
        frame = Image.fromarray(load_image(query.image_path))
        x1, y1, x2, y2 = (int(v) for v in query.boxes[0])
        crop = frame.crop((x1, y1, max(x1 + 1, x2), max(y1 + 1, y2)))
        tiles = [(crop.resize((max(1, round(crop.width * tile_height / crop.height)), tile_height)),
                  f"query {q}", (60, 60, 60))]
        for rank, hit in enumerate(ranked_hits(q, queries, gallery, detections, query_feats, top), 1):
            colour = HIT_COLOUR if hit.correct else MISS_COLOUR
            image = Image.fromarray(load_image(hit.image_path))
            tiles.append((_context_crop(image, hit.box, tile_height, colour),
                          f"#{rank}  {hit.similarity:.2f}", colour))
        width = sum(t.width + 2 * border + gap for t, _, _ in tiles)
        row = Image.new("RGB", (max(width, 1), tile_height + 2 * border + label_height), "white")
        draw = ImageDraw.Draw(row)
        x = 0
        for tile, label, colour in tiles:
            draw.rectangle([x, label_height, x + tile.width + 2 * border - 1,
                            label_height + tile_height + 2 * border - 1], fill=colour)
            row.paste(tile, (x + border, label_height + border))
            draw.text((x + 2, 2), label, fill=colour, font=font)
            x += tile.width + 2 * border + gap
        rows.append(row)
    caption_height = 20 * len(caption) + 8
    caption_width = max([int(font.getlength(line)) + 8 for line in caption] + [1])
    sheet = Image.new("RGB", (max([r.width for r in rows] + [caption_width]),
                              caption_height + sum(r.height + gap for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for line_number, line in enumerate(caption):
        draw.text((4, 4 + 20 * line_number), line, fill=(0, 0, 0), font=font)
    y = caption_height
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + gap
    with atomic_open(out, "wb") as handle:
        sheet.save(handle, format="PNG")
    return Path(out)
