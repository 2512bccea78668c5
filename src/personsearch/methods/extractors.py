"""How a checkpoint's features are extracted at test time. Every method but DICL uses the
model's own ``detect`` / ``embed_boxes``; DICL can fuse each box's scene feature with its
crop-branch feature (methods.md §4.5)."""

from __future__ import annotations

from typing import Any


def feature_extractors(info: dict[str, Any], fusion: str = "auto") -> dict[str, Any]:
    """Keyword arguments for ``evaluation.inference.run_model``: ``gallery_extractor`` /
    ``query_extractor``. ``fusion``: "auto" (as the checkpoint's method was configured),
    "on" or "off"."""
    if fusion not in ("auto", "on", "off"):
        raise ValueError(f"fusion must be auto, on or off, got {fusion!r}")
    method = info.get("method")
    params = ((info.get("config") or {}).get("method") or {}).get("params") or {}
    use_fusion = fusion == "on" or (fusion == "auto" and method == "dicl"
                                    and bool(params.get("inference_fusion", True)))
    if not use_fusion:
        return {}
    from personsearch.methods.dicl import fused_extractors

    return fused_extractors(crop_size=tuple(params.get("crop_size", (224, 96))))
