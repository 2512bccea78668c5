"""Metrics log (``<out>/metrics.jsonl``) and the progress bar.

Every record is one JSON object on its own line with at least ``type`` ("iter", "epoch_start",
"epoch", "nonfinite", "eval"), ``epoch`` and ``iteration`` (optimizer iterations done so far).
"iter" records hold each unweighted loss, ``total`` (weighted sum), ``lr`` and ``it_per_s``.
Lines are appended and flushed one at a time, so a crash loses at most the line being written;
on resume the records written after the checkpoint are dropped (:meth:`MetricsWriter.rewind`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from personsearch.atomic import atomic_open


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan" / "inf": strict JSON has no literal for them
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class MetricsWriter:
    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def reset(self) -> None:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(_json_safe(record)) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        return records

    def rewind(self, epoch: int, iteration: int, epoch_started: bool) -> None:
        """Keep only the records a run stopped at this checkpoint position had written, so
        that a resumed run appends exactly what an uninterrupted one would have."""
        if not self.enabled:
            return

        def keep(record: dict[str, Any]) -> bool:
            it = int(record.get("iteration", 0))
            ep = int(record.get("epoch", 0))
            kind = record.get("type")
            if it > iteration:
                return False
            if kind == "epoch_start":
                return ep < epoch or (ep == epoch and epoch_started)
            if kind in ("epoch", "eval"):
                return ep < epoch
            return True

        kept = [r for r in self.read() if keep(r)]
        with atomic_open(self.path, "w") as handle:
            for record in kept:
                handle.write(json.dumps(record) + "\n")


class ProgressBar:
    """tqdm bar for one epoch (it/s and ETA from tqdm, losses in the postfix)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def start(self, epoch: int, total: int, initial: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch}", dynamic_ncols=True,
                        leave=True)

    def update(self, postfix: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
