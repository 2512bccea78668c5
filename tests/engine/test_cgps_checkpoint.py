"""CGPS's released mmdetection checkpoint -> ours: every tensor lands on the right name (box
predictor rows in our class order), the hybrid memory is dropped, the imported network computes
what the original computes, it carries CGPS's network and test settings, and a wrong file is a
CheckpointError listing what does not fit."""

import collections
import json
import re

import pytest
import torch

from personsearch.cli.main import main
from personsearch.engine.checkpoint import load_checkpoint, load_model
from personsearch.engine.reference_checkpoints import (
    cgps_model_kwargs,
    cgps_to_personsearch,
    import_reference_checkpoint,
    read_reference_state_dict,
)
from personsearch.errors import CheckpointError
from personsearch.models import build_model
from personsearch.models.inference import set_test_proposals
from reference_names import rename_prefixes

# Our name -> CGPS's mmdetection name, written out by hand from mmdetection 2.x's modules
# (ResNet with norm1 = "bn1" and Bottleneck conv1..3 / bn1..3 / downsample.0/.1, RPNHead's
# rpn_conv / rpn_cls / rpn_reg, ResLayer shared head registering "layer4") and CGPS's
# cgps_head.py (fc_cls, fc_reg, id_feature on pooled res5, id_feature1 on pooled res4),
# independently of the converter's rules.
HAND_MAP = [
    ("rpn.head.conv.", "rpn_head.rpn_conv."),
    ("rpn.head.cls_logits.", "rpn_head.rpn_cls."),
    ("rpn.head.bbox_pred.", "rpn_head.rpn_reg."),
    ("roi_heads.head.res5.", "roi_head.shared_head.layer4."),
    ("roi_heads.embedding.project_res5.", "roi_head.bbox_head.id_feature."),
    ("roi_heads.embedding.project_res4.", "roi_head.bbox_head.id_feature1."),
    ("roi_heads.box_predictor.cls_score.", "roi_head.bbox_head.fc_cls."),
    ("roi_heads.box_predictor.bbox_pred.", "roi_head.bbox_head.fc_reg."),
]


@pytest.fixture(scope="module")
def original():
    """A seeded CGPS network in our modules; proposals are the anchors, the box predictor's
    weights are small and the classifier biased, so that persons are found at random weights
    (the caffe input is on 0..255: features are large)."""
    torch.manual_seed(0)
    model = build_model(**cgps_model_kwargs()).eval()
    with torch.no_grad():
        model.rpn.head.bbox_pred.weight.zero_()
        model.roi_heads.box_predictor.cls_score.weight.mul_(1e-4)
        model.roi_heads.box_predictor.bbox_pred.weight.mul_(1e-4)
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([-1.0, 1.0]))
    return model


def to_mmdet(state):
    """Our state dict -> the layout of CGPS's checkpoint: mmdetection names, the classifier rows
    in mmdetection's order (person, background), the one-class regressor (person rows only),
    BN batch counters (mmdetection's BN keeps them even when frozen), the hybrid memory."""
    out = {}
    for name, value in rename_prefixes(state, HAND_MAP).items():
        if name.startswith("roi_head.bbox_head.fc_cls."):
            value = value[[1, 0]]
        elif name.startswith("roi_head.bbox_head.fc_reg."):
            value = value[4:8]
        out[name] = value.clone()
        if name.endswith(".running_var"):
            out[name.replace(".running_var", ".num_batches_tracked")] = torch.tensor(0)
    out["roi_head.bbox_head.loss_reid.features"] = torch.zeros(100, 256)
    out["roi_head.bbox_head.loss_reid.labels"] = torch.zeros(100, dtype=torch.int64)
    return out


def mmcv_checkpoint(state, epoch=24):
    return {"meta": {"epoch": epoch, "iter": 1000, "mmdet_version": "2.4.0", "CLASSES": ("person",),
                     "config": "model = dict(type='FasterRCNN')",
                     "hook_msgs": {"milestones": collections.Counter([16, 22])}},
            "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


@pytest.fixture(scope="module")
def imported(tmp_path_factory, original):
    """(released file, personsearch checkpoint written by `personsearch import-checkpoint cgps`)."""
    folder = tmp_path_factory.mktemp("cgps")
    source, out = folder / "epoch_24.pth", folder / "cgps.pt"
    torch.save(mmcv_checkpoint(to_mmdet(original.state_dict())), source)
    assert main(["import-checkpoint", "cgps", str(source), "--out", str(out)]) == 0
    return source, out


def test_every_tensor_lands_on_its_name(original):
    ours = original.state_dict()
    converted = cgps_to_personsearch(to_mmdet(ours))
    assert list(converted) == list(ours)
    for key in ours:
        if key == "roi_heads.box_predictor.bbox_pred.weight" or key == "roi_heads.box_predictor.bbox_pred.bias":
            assert torch.equal(converted[key][4:], ours[key][4:]), key  # person deltas
            assert not converted[key][:4].any(), key  # background rows: CGPS has none
        else:
            assert torch.equal(converted[key], ours[key]), key


def test_predictor_follows_mmdetection_class_order(original):
    """By hand: CGPS's person probability is softmax(fc_cls x)[0] (mmdetection: foreground
    first), its person deltas fc_reg x; the imported predictor gives both at our person index."""
    theirs = to_mmdet(original.state_dict())
    model = build_model(**cgps_model_kwargs())
    model.load_state_dict(cgps_to_personsearch(theirs))
    torch.manual_seed(1)
    feat_res5 = torch.randn(3, 2048)
    with torch.no_grad():
        logits, deltas = model.roi_heads.box_predictor(feat_res5)
    cgps_logits = feat_res5 @ theirs["roi_head.bbox_head.fc_cls.weight"].T + theirs["roi_head.bbox_head.fc_cls.bias"]
    cgps_deltas = feat_res5 @ theirs["roi_head.bbox_head.fc_reg.weight"].T + theirs["roi_head.bbox_head.fc_reg.bias"]
    torch.testing.assert_close(logits.softmax(1)[:, 1], cgps_logits.softmax(1)[:, 0])
    torch.testing.assert_close(deltas[:, 4:], cgps_deltas)


def test_imported_network_detects_and_embeds_like_the_original(imported, original):
    model, info = load_model(imported[1])
    assert info["method"] == "cgps" and info["epoch"] == 24
    for network in (original, model):
        set_test_proposals(network, 8)  # few RoIs through res5: seconds, not minutes
    torch.manual_seed(2)
    images = torch.randn(1, 3, 192, 320)
    box = [torch.tensor([[40.0, 30.0, 90.0, 150.0]])]
    ours, theirs = original.detect(images, [(192, 320)]), model.detect(images, [(192, 320)])
    assert ours[0].boxes.shape[0] > 0
    torch.testing.assert_close(theirs[0].boxes, ours[0].boxes)
    torch.testing.assert_close(theirs[0].scores, ours[0].scores)
    torch.testing.assert_close(theirs[0].embeddings, ours[0].embeddings)
    torch.testing.assert_close(model.embed_boxes(images, [(192, 320)], box)[0],
                               original.embed_boxes(images, [(192, 320)], box)[0])


def test_checkpoint_carries_cgps_network_and_test_settings(imported):
    state, extra = read_reference_state_dict(imported[0])  # mmcv layout, a Counter in meta
    assert extra["epoch"] == 24 and "roi_head.bbox_head.loss_reid.features" in state
    checkpoint = load_checkpoint(imported[1])
    assert checkpoint["method"] == "cgps" and checkpoint["epoch"] == 24
    assert checkpoint["config"]["eval"] == {"format": "prw", "root": None, "det_thresh": 0.5,
                                            "gallery_size": -1, "min_size": 900, "max_size": 1500}
    cuhk = import_reference_checkpoint("cgps", imported[0], "cuhk-sysu")
    assert cuhk["config"]["eval"] == {"format": "cuhk-sysu", "root": None, "det_thresh": 0.5,
                                      "gallery_size": 100, "min_size": 900, "max_size": 1500}
    kwargs = checkpoint["model_kwargs"]
    assert (kwargs["resnet_style"], kwargs["channel_order"], kwargs["frozen_bn"]) == ("caffe", "bgr", True)
    assert (tuple(kwargs["pixel_mean"]), tuple(kwargs["pixel_std"])) == ((103.53, 116.28, 123.675), (1.0, 1.0, 1.0))
    assert (tuple(kwargs["anchor_ratios"]), kwargs["anchor_rounding"], kwargs["roi_aligned"]) == ((1.0, 2.0, 3.0), False, True)
    assert (kwargs["rpn_pre_nms_top_n_test"], kwargs["rpn_post_nms_top_n_test"], kwargs["rpn_min_size_test"]) == (6000, 300, 16.0)
    assert (kwargs["box_score_thresh"], kwargs["box_nms_thresh"], kwargs["detections_per_image"]) == (0.05, 0.4, 100)


def test_a_seqnet_file_is_not_a_cgps_checkpoint(original):
    seqnet_like = {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7), "rpn.head.conv.weight": torch.zeros(1024, 1024, 3, 3),
                   "roi_heads.reid_loss.lut": torch.zeros(5, 256)}
    with pytest.raises(CheckpointError) as info:
        cgps_to_personsearch(seqnet_like, "epoch_19.pth")
    text = str(info.value)
    assert text.startswith("epoch_19.pth: not a CGPS checkpoint of the expected network; missing keys: backbone.bn1.weight")
    assert "unexpected keys: rpn.head.conv.weight, roi_heads.reid_loss.lut" in text
    assert "shape mismatches" not in text


def test_errors_list_missing_unexpected_and_shapes_in_the_files_terms(original):
    theirs = to_mmdet(original.state_dict())
    del theirs["roi_head.bbox_head.id_feature1.bias"]
    theirs["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(3, 2048)  # two foreground classes
    theirs["roi_head.bbox_head.fc_reg.weight"] = torch.zeros(8, 2048)
    theirs["rpn_head.rpn_cls.weight"] = torch.zeros(9, 1024, 1, 1)
    theirs["roi_head.bbox_head.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        cgps_to_personsearch(theirs, "x.pth")
    text = str(info.value)
    assert "missing keys: roi_heads.embedding.project_res4.bias;" in text
    assert "unexpected keys: roi_head.bbox_head.extra.weight;" in text
    assert "rpn.head.cls_logits.weight (9, 1024, 1, 1) (model expects (15, 1024, 1, 1))" in text
    assert "roi_head.bbox_head.fc_cls.weight (3, 2048) (CGPS's one-class head has 2 rows)" in text
    assert "roi_head.bbox_head.fc_reg.weight (8, 2048) (CGPS's one-class head has 4 rows)" in text
    assert "roi_heads.box_predictor.cls_score.weight" not in text  # said once, in CGPS's terms


@pytest.mark.parametrize("content, problem", [
    ({"meta": {"epoch": 1}}, "no 'model' or 'state_dict' state dict in this file (top level: ['meta'])"),
    ({"state_dict": {"a": 1}}, "the 'state_dict' entry is not a state dict of tensors"),
])
def test_not_a_checkpoint(tmp_path, content, problem):
    path = tmp_path / "bad.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: {problem}")):
        import_reference_checkpoint("cgps", path)


def test_import_then_eval_end_to_end(tmp_path, imported):
    """personsearch eval on the imported checkpoint, tiny synthetic PRW, detections included
    (small test size and 8 proposals to stay fast, overriding the checkpoint's 900/1500 and 300)."""
    from personsearch.data.synth import generate_dataset

    root, metrics = tmp_path / "prw", tmp_path / "m.json"
    generate_dataset(root, fmt="prw", frames=4, seed=3, width=320, height=180, workers=1)
    assert main(["eval", str(imported[1]), "--dataset", "prw", "--root", str(root), "--min-size", "180",
                 "--max-size", "320", "--test-proposals", "8", "--det-thresh", "0.05",
                 "--no-progress", "--json", str(metrics)]) == 0
    values = json.loads(metrics.read_text())
    assert values["num_queries"] > 0 and 0.0 <= values["mAP"] <= 1.0 and 0.0 <= values["det_recall"] <= 1.0
