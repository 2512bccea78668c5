"""Import the released checkpoints of the reference implementations (``personsearch
import-checkpoint``) into a normal personsearch checkpoint that ``eval``, ``index build``,
``search`` and ``serve`` accept.

SeqNet (AAAI 2021, official code at commit edec285c): its ``epoch_19.pth`` files hold
``{"model": state_dict, "optimizer": ..., "lr_scheduler": ..., "epoch": ...}``. The model's
parameter names map onto ours one to one (docs/reference_parity.md lists the table):

===============================================================  ====================================
SeqNet name                                                      personsearch name
===============================================================  ====================================
``backbone.{conv1,bn1,layer1..3}.*``                             same
``rpn.head.conv.weight`` (torchvision < 0.12) or ``.conv.0.0.*``  ``rpn.head.conv.*``
``rpn.head.{cls_logits,bbox_pred}.*``                            same
``roi_heads.box_head.layer4.*``                                  ``roi_heads.box_head.res5.*``
``roi_heads.reid_head.layer4.*``                                 ``roi_heads.reid_head.res5.*``
``roi_heads.faster_rcnn_predictor.{cls_score,bbox_pred}.*``      ``roi_heads.box_predictor.*``
``roi_heads.box_predictor.bbox_pred.0.*`` / ``.1.*``             ``roi_heads.reid_regressor.layer.linear.*`` / ``.bn.*``
``roi_heads.embedding_head.projectors.feat_res{4,5}.0.*`` / .1   ``roi_heads.embedding.project_res{4,5}.linear.*`` / ``.bn.*``
``roi_heads.embedding_head.rescaler.*``                          ``roi_heads.embedding.rescaler.*``
``roi_heads.reid_loss.*`` (OIM lookup table and queue)           dropped (training state only)
===============================================================  ====================================

A ``module.`` prefix (a model saved inside DataParallel) is removed first. A file that is not
such a checkpoint is a :class:`~personsearch.errors.CheckpointError` that lists the missing and
unexpected keys and every shape mismatch.

The imported checkpoint carries SeqNet's test settings (its ``configs/_path_/defaults``): images
resized to 900 / 1500, 6000 / 300 RPN proposals before / after NMS at 0.7, stage-1 score
threshold 0.5 and NMS 0.4, stage-2 NMS 0.5, at most 300 detections — the defaults of
``personsearch.config.ModelConfig`` and ``EvalConfig``, which follow SeqNet.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from personsearch.errors import CheckpointError

__all__ = [
    "REFERENCE_FORMATS",
    "seqnet_to_personsearch",
    "read_reference_state_dict",
    "import_reference_checkpoint",
]

#: Key patterns of SeqNet's state dict -> our names. The first pattern that matches wins; a
#: replacement of None drops the key (training-only state).
_SEQNET_RULES: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"^roi_heads\.reid_loss\..*$"), None),
    (re.compile(r"^(backbone\.(?:conv1|bn1|layer[123])\..*)$"), r"\1"),
    (re.compile(r"^rpn\.head\.conv\.(?:0\.0\.)?(weight|bias)$"), r"rpn.head.conv.\1"),
    (re.compile(r"^rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)$"), r"rpn.head.\1.\2"),
    (re.compile(r"^roi_heads\.(box_head|reid_head)\.layer4\.(.*)$"), r"roi_heads.\1.res5.\2"),
    (re.compile(r"^roi_heads\.faster_rcnn_predictor\.(cls_score|bbox_pred)\.(weight|bias)$"),
     r"roi_heads.box_predictor.\1.\2"),
    (re.compile(r"^roi_heads\.box_predictor\.bbox_pred\.0\.(.*)$"), r"roi_heads.reid_regressor.layer.linear.\1"),
    (re.compile(r"^roi_heads\.box_predictor\.bbox_pred\.1\.(.*)$"), r"roi_heads.reid_regressor.layer.bn.\1"),
    (re.compile(r"^roi_heads\.embedding_head\.projectors\.feat_res([45])\.0\.(.*)$"),
     r"roi_heads.embedding.project_res\1.linear.\2"),
    (re.compile(r"^roi_heads\.embedding_head\.projectors\.feat_res([45])\.1\.(.*)$"),
     r"roi_heads.embedding.project_res\1.bn.\2"),
    (re.compile(r"^roi_heads\.embedding_head\.rescaler\.(.*)$"), r"roi_heads.embedding.rescaler.\1"),
]


def _seqnet_model_kwargs() -> dict[str, Any]:
    """SeqNet's network and test settings: the ModelConfig defaults (they follow SeqNet)."""
    from personsearch.config import Config, model_kwargs

    kwargs = model_kwargs(Config())
    kwargs["backbone_weights"] = None
    return kwargs


def _rename(state: dict[str, Tensor], rules: list[tuple[re.Pattern[str], str | None]]) -> tuple[dict[str, Tensor], list[str]]:
    """(renamed state, source keys no rule matched)."""
    renamed: dict[str, Tensor] = {}
    unmatched: list[str] = []
    for key, value in state.items():
        key_plain = key[len("module."):] if key.startswith("module.") else key
        for pattern, replacement in rules:
            if pattern.match(key_plain):
                if replacement is not None:
                    renamed[pattern.sub(replacement, key_plain)] = value
                break
        else:
            unmatched.append(key)
    return renamed, unmatched


def _check_against_model(source: str, renamed: dict[str, Tensor], unmatched: list[str], model_kwargs: dict[str, Any]) -> dict[str, Tensor]:
    """Compare the renamed state with what ``build_model(**model_kwargs)`` expects; return the
    state in the model's key order or raise CheckpointError listing every problem."""
    from personsearch.models import build_model

    with torch.device("meta"):  # names, shapes and dtypes only: no memory, no initialisation
        expected = build_model(**model_kwargs).state_dict()
    problems: list[str] = []
    # BatchNorm's num_batches_tracked is a counter that inference never reads; files saved
    # without it (or with a model that had none) get 0.
    missing = [k for k in expected if k not in renamed and not k.endswith("num_batches_tracked")]
    unexpected = list(unmatched) + [k for k in renamed if k not in expected]
    mismatched = [
        f"{k} {tuple(renamed[k].shape)} (model expects {tuple(expected[k].shape)})"
        for k in expected if k in renamed and tuple(renamed[k].shape) != tuple(expected[k].shape)
    ]

    def show(keys: list[str]) -> str:
        head = ", ".join(keys[:8])
        return head + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

    if missing:
        problems.append(f"missing keys: {show(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {show(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {show(mismatched)}")
    if problems:
        raise CheckpointError(f"{source}: not a SeqNet checkpoint of the expected network; " + "; ".join(problems))
    out: dict[str, Tensor] = {}
    for key, reference in expected.items():
        value = renamed.get(key)
        if value is None:  # num_batches_tracked only (checked above)
            value = torch.zeros(reference.shape, dtype=reference.dtype)
        out[key] = value.detach().to(dtype=reference.dtype).clone().contiguous()
    return out


def seqnet_to_personsearch(state: dict[str, Tensor], source: str = "state dict",
                           model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:
    """SeqNet's ``model`` state dict -> our state dict for ``build_model(**model_kwargs)``
    (SeqNet's own settings by default). CheckpointError naming ``source`` when it does not fit."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: the 'model' entry is not a state dict of tensors")
    renamed, unmatched = _rename(state, _SEQNET_RULES)
    return _check_against_model(source, renamed, unmatched, model_kwargs or _seqnet_model_kwargs())


def read_reference_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load a released reference file safely (``weights_only=True``; ``collections.Counter``,
    which a saved MultiStepLR holds, is allowed) -> (model state dict, other entries of note:
    ``epoch`` when present)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or unsafe file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(error).__name__}: {first_line})") from None
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        state, extra = data["model"], {"epoch": data.get("epoch")}
    elif isinstance(data, dict) and data and all(isinstance(v, Tensor) for v in data.values()):
        state, extra = data, {"epoch": None}  # a bare state dict
    else:
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: no 'model' state dict in this file (top level: {keys})")
    return state, extra


def _seqnet_config(dataset: str) -> dict[str, Any]:
    from personsearch.config import Config, EvalConfig, MethodConfig, config_to_dict

    fmt = {"prw": "prw", "cuhk-sysu": "cuhk-sysu"}[dataset]
    gallery_size = -1 if fmt == "prw" else 100
    cfg = Config(method=MethodConfig(name="seqnet"),
                 eval=EvalConfig(format=fmt, det_thresh=0.5, gallery_size=gallery_size, min_size=900, max_size=1500))
    plain = config_to_dict(cfg)
    plain["data"]["format"] = fmt
    return plain


def import_seqnet(path: str | Path, dataset: str = "prw") -> dict[str, Any]:
    state, extra = read_reference_state_dict(path)
    kwargs = _seqnet_model_kwargs()
    model_state = seqnet_to_personsearch(state, str(path), kwargs)
    epoch = extra.get("epoch")
    return {
        "format_version": 1,
        "model_kwargs": kwargs,
        "model": model_state,
        "method": "seqnet",
        "method_state": {},
        "config": _seqnet_config(dataset),
        "epoch": int(epoch) if isinstance(epoch, int) else None,
        "iteration": None,
        "imported_from": {"format": "seqnet", "file": str(Path(path).resolve())},
    }


REFERENCE_FORMATS: dict[str, Callable[..., dict[str, Any]]] = {"seqnet": import_seqnet}


def import_reference_checkpoint(fmt: str, path: str | Path, dataset: str = "prw") -> dict[str, Any]:
    """A personsearch checkpoint dict (``save_checkpoint`` writes it) from a reference file."""
    if fmt not in REFERENCE_FORMATS:
        raise CheckpointError(f"unknown reference format {fmt!r} (known: {', '.join(REFERENCE_FORMATS)})")
    if dataset not in ("prw", "cuhk-sysu"):
        raise CheckpointError(f"dataset must be prw or cuhk-sysu, got {dataset!r}")
    return REFERENCE_FORMATS[fmt](path, dataset)
