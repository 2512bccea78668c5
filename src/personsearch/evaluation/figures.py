"""Figures of the SSL paper reproduced from our runs: pseudo-label precision/recall per epoch
(Fig. 4) and a 2-D embedding of test features coloured by identity, marker by person height
(Fig. 7). matplotlib with the Agg backend (no display)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
