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

CGPS (AAAI 2022, official code ljpadam/CGPS at 68671ff, mmdetection 2.x): its checkpoints hold
``{"meta": {..., "epoch": n}, "state_dict": state_dict, "optimizer": ...}`` (mmcv's layout):

===============================================================  ====================================
CGPS (mmdetection) name                                          personsearch name
===============================================================  ====================================
``backbone.{conv1,bn1,layer1..3}.*`` (caffe-style ResNet-50)     same (``model.resnet_style: caffe``)
``rpn_head.rpn_conv.*`` / ``rpn_cls.*`` / ``rpn_reg.*``          ``rpn.head.conv.*`` / ``cls_logits.*`` / ``bbox_pred.*``
``roi_head.shared_head.layer4.*`` (ResLayer, res5)               ``roi_heads.head.res5.*``
``roi_head.bbox_head.fc_cls.*`` [2, 2048] (person, background)   ``roi_heads.box_predictor.cls_score.*`` (rows swapped)
``roi_head.bbox_head.fc_reg.*`` [4, 2048] (person deltas)        ``roi_heads.box_predictor.bbox_pred.*`` rows 4..7 (0..3 zero)
``roi_head.bbox_head.id_feature.*`` [128, 2048] (pooled res5)    ``roi_heads.embedding.project_res5.*``
``roi_head.bbox_head.id_feature1.*`` [128, 1024] (pooled res4)   ``roi_heads.embedding.project_res4.*``
``roi_head.bbox_head.loss_reid.*`` / ``loss_triplet.*``          dropped (hybrid memory: training state)
``*.num_batches_tracked``                                        dropped (frozen BN)
===============================================================  ====================================

The imported checkpoint carries CGPS's network settings (caffe-style ResNet-50 with frozen BN,
BGR input with mean 103.53/116.28/123.675 and std 1, unrounded anchors of ratios 1/2/3, aligned
RoIAlign with adaptive sampling, its single RoI head) and test settings (images resized to
900/1500 on both datasets, 6000/300 proposals at NMS 0.7, minimum proposal
side 16, score threshold 0.05, NMS 0.4, at most 100 detections): ``_CGPS_MODEL``.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from personsearch.errors import CheckpointError
from personsearch.models.state_dict_check import compare_state_dicts, show_keys

__all__ = [
    "REFERENCE_FORMATS",
    "cgps_model_kwargs",
    "cgps_to_personsearch",
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


def _is_batch_counter(key: str) -> bool:
    # BatchNorm's num_batches_tracked is a counter that inference never reads: files saved
    # without it (or a model with frozen BN, which has none) are fine
    return key.endswith("num_batches_tracked")


def _check_against_model(source: str, reference: str, renamed: dict[str, Tensor], unmatched: list[str],
                         model_kwargs: dict[str, Any], source_problems: dict[str, str] | None = None) -> dict[str, Tensor]:
    """Compare the renamed state with what ``build_model(**model_kwargs)`` expects; return the
    state in the model's key order or raise CheckpointError listing every problem (missing and
    unexpected keys, shape mismatches; ``source_problems`` {our key: problem} found in the file's
    own terms replace the shape check of those keys)."""
    from personsearch.models import build_model

    with torch.device("meta"):  # names, shapes and dtypes only: no memory, no initialisation
        expected = build_model(**model_kwargs).state_dict()
    diff = compare_state_dicts(renamed, expected, ignore=_is_batch_counter)
    unexpected = list(unmatched) + diff.unexpected
    source_problems = source_problems or {}
    mismatched = [f"{k} {shape} (model expects {wanted})" for k, shape, wanted in diff.mismatched
                  if k not in source_problems] + list(source_problems.values())
    problems: list[str] = []
    if diff.missing:
        problems.append(f"missing keys: {show_keys(diff.missing, 8)}")
    if unexpected:
        problems.append(f"unexpected keys: {show_keys(unexpected, 8)}")
    if mismatched:
        problems.append(f"shape mismatches: {show_keys(mismatched, 8)}")
    if problems:
        raise CheckpointError(f"{source}: not a {reference} checkpoint of the expected network; " + "; ".join(problems))
    out: dict[str, Tensor] = {}
    for key, wanted in expected.items():
        value = renamed.get(key)
        if value is None:  # num_batches_tracked only (checked above)
            value = torch.zeros(wanted.shape, dtype=wanted.dtype)
        out[key] = value.detach().to(dtype=wanted.dtype).clone().contiguous()
    return out


def _convert(state: dict[str, Tensor], source: str, reference: str, entry: str,
             rules: list[tuple[re.Pattern[str], str | None]], model_kwargs: dict[str, Any],
             convert_values: Callable[[dict[str, Tensor]], dict[str, str]] | None = None) -> dict[str, Tensor]:
    """A reference's state dict (``entry`` of its file) renamed by ``rules``, values converted
    where the layouts differ, checked against our model."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: the '{entry}' entry is not a state dict of tensors")
    renamed, unmatched = _rename(state, rules)
    problems = convert_values(renamed) if convert_values is not None else {}
    return _check_against_model(source, reference, renamed, unmatched, model_kwargs, problems)


def seqnet_to_personsearch(state: dict[str, Tensor], source: str = "state dict",
                           model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:
    """SeqNet's ``model`` state dict -> our state dict for ``build_model(**model_kwargs)``
    (SeqNet's own settings by default). CheckpointError naming ``source`` when it does not fit."""
    return _convert(state, source, "SeqNet", "model", _SEQNET_RULES, model_kwargs or _seqnet_model_kwargs())


def read_reference_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load a released reference file safely (``weights_only=True``; ``collections.Counter``,
    which a saved MultiStepLR holds, is allowed) -> (model state dict, other entries of note:
    ``epoch`` when present). The state dict is under ``model`` (SeqNet) or ``state_dict``
    (mmcv / mmdetection, with ``meta.epoch``), or the file is a bare state dict."""
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
    elif isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}  # mmcv's layout
        state, extra = data["state_dict"], {"epoch": meta.get("epoch")}
    elif isinstance(data, dict) and data and all(isinstance(v, Tensor) for v in data.values()):
        state, extra = data, {"epoch": None}  # a bare state dict
    else:
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: no 'model' or 'state_dict' state dict in this file (top level: {keys})")
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


def _imported_checkpoint(fmt: str, path: str | Path, model_kwargs: dict[str, Any], model_state: dict[str, Tensor],
                         config: dict[str, Any], epoch: Any) -> dict[str, Any]:
    """The personsearch checkpoint dict of an imported reference model (method = ``fmt``)."""
    return {
        "format_version": 1,
        "model_kwargs": model_kwargs,
        "model": model_state,
        "method": fmt,
        "method_state": {},
        "config": config,
        "epoch": int(epoch) if isinstance(epoch, int) else None,
        "iteration": None,
        "imported_from": {"format": fmt, "file": str(Path(path).resolve())},
    }


def import_seqnet(path: str | Path, dataset: str = "prw") -> dict[str, Any]:
    state, extra = read_reference_state_dict(path)
    kwargs = _seqnet_model_kwargs()
    model_state = seqnet_to_personsearch(state, str(path), kwargs)
    return _imported_checkpoint("seqnet", path, kwargs, model_state, _seqnet_config(dataset), extra.get("epoch"))


#: Key patterns of CGPS's mmdetection state dict (configs/cgps/*.py at ljpadam/CGPS 68671ff:
#: FasterRCNN with a caffe-style ResNet-50 to C4, RPNHead, ReidRoIHead with the ResLayer shared
#: head and CGPSHead) -> our names for build_model(roi_head="cgps").
_CGPS_RULES: list[tuple[re.Pattern[str], str | None]] = [
    # CGPSHead's loss modules: the hybrid memory (features, labels) and the quaduplet loss
    (re.compile(r"^roi_head\.bbox_head\.(?:loss_reid|loss_triplet)\..*$"), None),
    (re.compile(r"^(backbone\.(?:conv1|bn1|layer[123])\..*)$"), r"\1"),
    (re.compile(r"^rpn_head\.rpn_conv\.(weight|bias)$"), r"rpn.head.conv.\1"),
    (re.compile(r"^rpn_head\.rpn_cls\.(weight|bias)$"), r"rpn.head.cls_logits.\1"),
    (re.compile(r"^rpn_head\.rpn_reg\.(weight|bias)$"), r"rpn.head.bbox_pred.\1"),
    (re.compile(r"^roi_head\.shared_head\.layer4\.(.*)$"), r"roi_heads.head.res5.\1"),
    (re.compile(r"^roi_head\.bbox_head\.fc_cls\.(weight|bias)$"), r"roi_heads.box_predictor.cls_score.\1"),
    (re.compile(r"^roi_head\.bbox_head\.fc_reg\.(weight|bias)$"), r"roi_heads.box_predictor.bbox_pred.\1"),
    (re.compile(r"^roi_head\.bbox_head\.id_feature\.(weight|bias)$"), r"roi_heads.embedding.project_res5.\1"),
    (re.compile(r"^roi_head\.bbox_head\.id_feature1\.(weight|bias)$"), r"roi_heads.embedding.project_res4.\1"),
]


#: CGPS's one-class box predictor -> ours: (CGPS's name, ours, rows in CGPS's file, conversion).
#: Classifier rows: mmdetection puts the foreground class first and background last (person,
#: background), ours background first: the rows swap. Regressor: CGPS's is class-specific for
#: its one class (4 rows of deltas); ours has 4 rows per class including background (never
#: used at inference): zeros, then CGPS's person rows.
_CGPS_PREDICTOR: list[tuple[str, str, int, Callable[[Tensor], Tensor]]] = [
    ("roi_head.bbox_head.fc_cls", "roi_heads.box_predictor.cls_score", 2, lambda t: t.flip(0)),
    ("roi_head.bbox_head.fc_reg", "roi_heads.box_predictor.bbox_pred", 4,
     lambda t: torch.cat([torch.zeros_like(t), t])),
]


def _cgps_predictor_to_ours(renamed: dict[str, Tensor]) -> dict[str, str]:
    """Convert the box predictor in place; returns {our key: problem in CGPS's terms} for the
    tensors whose rows are not CGPS's (left as they are)."""
    problems = {}
    for source_name, our_name, rows, convert in _CGPS_PREDICTOR:
        for suffix in ("weight", "bias"):
            key = f"{our_name}.{suffix}"
            if key not in renamed:
                continue
            if renamed[key].shape[0] == rows:
                renamed[key] = convert(renamed[key])
            else:
                problems[key] = (f"{source_name}.{suffix} {tuple(renamed[key].shape)} "
                                 f"(CGPS's one-class head has {rows} rows)")
    return problems


#: CGPS's network and test settings (configs/_base_/models/faster_rcnn_r50_caffe_c4_reid_norm_unsu.py
#: and configs/cgps/{prw,cuhk}.py): caffe-style ResNet-50 with frozen BN and caffe pixel
#: normalisation (BGR, mean subtraction only), anchors of sizes 32..512 (scales 2..32 x stride 16)
#: and ratios 1, 2, 3 without rounding, RoIAlign 14x14 aligned with adaptive sampling, one RoI
#: head; test: 6000 / 300 proposals before / after NMS 0.7, proposals smaller than 16 pixels
#: dropped, score threshold 0.05, NMS 0.4, at most 100 detections. Training settings
#: (12000 / 2000 proposals, minimum size 8, RoI sampling 128 at IoU 0.5 / 0.1, L1 box losses)
#: are recorded too, for fine-tuning.
_CGPS_MODEL: dict[str, Any] = {
    "backbone": "resnet50", "resnet_style": "caffe", "frozen_stem": True, "frozen_bn": True,
    "pixel_mean": (103.53, 116.28, 123.675), "pixel_std": (1.0, 1.0, 1.0), "channel_order": "bgr",
    "anchor_sizes": (32, 64, 128, 256, 512), "anchor_ratios": (1.0, 2.0, 3.0), "anchor_rounding": False,
    "roi_head": "cgps", "roi_pooling": "roi_align", "roi_output_size": 14, "roi_sampling_ratio": 0,
    "roi_aligned": True, "embedding_dim": 256,
    "rpn_pre_nms_top_n_train": 12000, "rpn_post_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 6000, "rpn_post_nms_top_n_test": 300, "rpn_nms_thresh": 0.7,
    "rpn_min_size_train": 8.0, "rpn_min_size_test": 16.0, "rpn_fg_iou_thresh": 0.7, "rpn_bg_iou_thresh": 0.3,
    "roi_fg_iou_thresh": 0.5, "roi_bg_iou_thresh": 0.1, "roi_batch_size_per_image": 128,
    "box_score_thresh": 0.05, "box_nms_thresh": 0.4, "detections_per_image": 100,
    "rpn_box_loss": "l1", "roi_box_loss": "l1",
}
#: CGPS's test image scale per dataset (configs/cgps/{prw,cuhk}.py at 68671ff, test_pipeline
#: img_scale (1500, 900), keep_ratio): (short, long) side. (The repository's first commit had
#: (1000, 600) for PRW.)
_CGPS_TEST_SIZE = {"prw": (900, 1500), "cuhk-sysu": (900, 1500)}


def cgps_model_kwargs() -> dict[str, Any]:
    """The ``build_model`` keyword arguments of CGPS's released network (``_CGPS_MODEL``)."""
    from personsearch.config import Config, ModelConfig, model_kwargs

    base = model_kwargs(Config(model=ModelConfig(**_CGPS_MODEL)))  # checks every value
    base["backbone_weights"] = None
    return base


def cgps_to_personsearch(state: dict[str, Tensor], source: str = "state dict",
                         model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:
    """CGPS's mmdetection ``state_dict`` -> our state dict for ``build_model(**model_kwargs)``
    (CGPS's own settings by default). CheckpointError naming ``source`` when it does not fit."""
    return _convert(state, source, "CGPS", "state_dict", _CGPS_RULES, model_kwargs or cgps_model_kwargs(),
                    _cgps_predictor_to_ours)


def _cgps_config(dataset: str, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    from personsearch.config import Config, DataConfig, EvalConfig, MethodConfig, ModelConfig, config_to_dict

    short, long = _CGPS_TEST_SIZE[dataset]
    gallery_size = -1 if dataset == "prw" else 100
    cfg = Config(data=DataConfig(format=dataset, min_size=short, max_size=long),
                 model=ModelConfig(**model_kwargs), method=MethodConfig(name="cgps"),
                 eval=EvalConfig(format=dataset, det_thresh=0.5, gallery_size=gallery_size,
                                 min_size=short, max_size=long))
    return config_to_dict(cfg)


def import_cgps(path: str | Path, dataset: str = "prw") -> dict[str, Any]:
    state, extra = read_reference_state_dict(path)
    kwargs = cgps_model_kwargs()
    model_state = cgps_to_personsearch(state, str(path), kwargs)
    return _imported_checkpoint("cgps", path, kwargs, model_state, _cgps_config(dataset, kwargs), extra.get("epoch"))


REFERENCE_FORMATS: dict[str, Callable[..., dict[str, Any]]] = {"seqnet": import_seqnet, "cgps": import_cgps}


def import_reference_checkpoint(fmt: str, path: str | Path, dataset: str = "prw") -> dict[str, Any]:
    """A personsearch checkpoint dict (``save_checkpoint`` writes it) from a reference file."""
    if fmt not in REFERENCE_FORMATS:
        raise CheckpointError(f"unknown reference format {fmt!r} (known: {', '.join(REFERENCE_FORMATS)})")
    if dataset not in ("prw", "cuhk-sysu"):
        raise CheckpointError(f"dataset must be prw or cuhk-sysu, got {dataset!r}")
    return REFERENCE_FORMATS[fmt](path, dataset)
