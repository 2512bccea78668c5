"""SeqNet's released state dict -> ours: every tensor lands on the right name, OIM buffers are
dropped, and a wrong file is a CheckpointError listing what does not fit."""

import collections
import re

import pytest
import torch

from personsearch.cli.main import main
from personsearch.engine.checkpoint import load_checkpoint, load_model
from personsearch.engine.reference_checkpoints import (
    import_reference_checkpoint,
    read_reference_state_dict,
    seqnet_to_personsearch,
)
from personsearch.errors import CheckpointError
from personsearch.models import build_model
from reference_names import rename_prefixes

# Our name -> SeqNet's name, written out by hand from SeqNet's modules (models/seqnet.py,
# models/resnet.py at edec285c) independently of the converter's rules.
HAND_MAP = [
    ("roi_heads.box_head.res5.", "roi_heads.box_head.layer4."),
    ("roi_heads.reid_head.res5.", "roi_heads.reid_head.layer4."),
    ("roi_heads.box_predictor.", "roi_heads.faster_rcnn_predictor."),
    ("roi_heads.reid_regressor.layer.linear.", "roi_heads.box_predictor.bbox_pred.0."),
    ("roi_heads.reid_regressor.layer.bn.", "roi_heads.box_predictor.bbox_pred.1."),
    ("roi_heads.embedding.project_res4.linear.", "roi_heads.embedding_head.projectors.feat_res4.0."),
    ("roi_heads.embedding.project_res4.bn.", "roi_heads.embedding_head.projectors.feat_res4.1."),
    ("roi_heads.embedding.project_res5.linear.", "roi_heads.embedding_head.projectors.feat_res5.0."),
    ("roi_heads.embedding.project_res5.bn.", "roi_heads.embedding_head.projectors.feat_res5.1."),
    ("roi_heads.embedding.rescaler.", "roi_heads.embedding_head.rescaler."),
]


@pytest.fixture(scope="module")
def ours():
    torch.manual_seed(0)
    state = build_model().state_dict()
    # distinct values everywhere so that a swapped pair of names cannot go unnoticed
    return {k: (torch.arange(v.numel()).reshape(v.shape).to(v.dtype) + i) for i, (k, v) in enumerate(state.items())}


def to_seqnet(state, new_rpn_names=False):
    prefixes = HAND_MAP + ([("rpn.head.conv.", "rpn.head.conv.0.0.")] if new_rpn_names else [])
    out = rename_prefixes(state, prefixes)
    out["roi_heads.reid_loss.lut"] = torch.zeros(5532, 256)
    out["roi_heads.reid_loss.cq"] = torch.zeros(5000, 256)
    return out


@pytest.mark.parametrize("new_rpn_names", [False, True])
def test_every_tensor_lands_on_its_name(ours, new_rpn_names):
    converted = seqnet_to_personsearch(to_seqnet(ours, new_rpn_names))
    assert list(converted) == list(ours)
    for key in ours:
        assert torch.equal(converted[key], ours[key]), key


def test_dataparallel_prefix_and_missing_batch_counters(ours):
    theirs = {"module." + k: v for k, v in to_seqnet(ours).items() if not k.endswith("num_batches_tracked")}
    converted = seqnet_to_personsearch(theirs)
    assert torch.equal(converted["backbone.conv1.weight"], ours["backbone.conv1.weight"])
    assert int(converted["backbone.bn1.num_batches_tracked"]) == 0


def test_errors_list_missing_unexpected_and_shapes(ours):
    theirs = to_seqnet(ours)
    del theirs["roi_heads.embedding_head.rescaler.weight"]
    theirs["roi_heads.extra.weight"] = torch.zeros(3)
    theirs["rpn.head.cls_logits.weight"] = torch.zeros(9, 1024, 1, 1)
    with pytest.raises(CheckpointError) as info:
        seqnet_to_personsearch(theirs, "x.pth")
    text = str(info.value)
    assert text.startswith("x.pth: ")
    assert "missing keys: roi_heads.embedding.rescaler.weight" in text
    assert "unexpected keys: roi_heads.extra.weight" in text
    assert "rpn.head.cls_logits.weight (9, 1024, 1, 1) (model expects (15, 1024, 1, 1))" in text


def test_read_released_layout_with_scheduler_counter(tmp_path, ours):
    path = tmp_path / "epoch_19.pth"
    torch.save({"model": to_seqnet(ours), "optimizer": {"state": {}, "param_groups": []},
                "lr_scheduler": {"milestones": collections.Counter([16]), "last_epoch": 19}, "epoch": 19}, path)
    state, extra = read_reference_state_dict(path)
    assert extra["epoch"] == 19 and "roi_heads.reid_loss.lut" in state
    checkpoint = import_reference_checkpoint("seqnet", path, "cuhk-sysu")
    assert checkpoint["method"] == "seqnet" and checkpoint["epoch"] == 19
    assert checkpoint["config"]["eval"] == {"format": "cuhk-sysu", "root": None, "det_thresh": 0.5,
                                            "gallery_size": 100, "min_size": 900, "max_size": 1500}
    kwargs = checkpoint["model_kwargs"]
    assert (kwargs["rpn_pre_nms_top_n_test"], kwargs["rpn_post_nms_top_n_test"], kwargs["rpn_nms_thresh"]) == (6000, 300, 0.7)
    assert (kwargs["box_score_thresh"], kwargs["box_nms_thresh"], kwargs["reid_nms_thresh"]) == (0.5, 0.4, 0.5)


@pytest.mark.parametrize("content, problem", [
    ({"weights": {"a": 1}}, "no 'model' or 'state_dict' state dict in this file (top level: ['weights'])"),
    ([1, 2], "no 'model' or 'state_dict' state dict in this file (top level: list)"),
])
def test_not_a_checkpoint(tmp_path, content, problem):
    path = tmp_path / "bad.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: {problem}")):
        read_reference_state_dict(path)


def test_cli_writes_a_checkpoint_load_model_accepts(tmp_path, ours, capsys):
    source, out = tmp_path / "epoch_19.pth", tmp_path / "seqnet.pt"
    torch.save({"model": to_seqnet(ours), "epoch": 19}, source)
    assert main(["import-checkpoint", "seqnet", str(source), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model, info = load_model(out)
    assert info["method"] == "seqnet" and load_checkpoint(out)["config"]["eval"]["gallery_size"] == -1
    assert torch.equal(model.state_dict()["roi_heads.embedding.rescaler.bias"], ours["roi_heads.embedding.rescaler.bias"])


def test_cli_error_is_one_line(tmp_path, capsys):
    source = tmp_path / "garbage.pth"
    source.write_bytes(b"not a torch file")
    assert main(["import-checkpoint", "seqnet", str(source), "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"personsearch import-checkpoint: error: {source}: cannot load checkpoint") and "\n" not in err


def test_import_then_eval_end_to_end(tmp_path, ours):
    """import-checkpoint -> personsearch eval on a tiny synthetic PRW (small test size to stay
    fast; the imported checkpoint's own 900/1500 is overridden on the command line)."""
    import json

    from personsearch.data.synth import generate_dataset

    root = tmp_path / "prw"
    generate_dataset(root, fmt="prw", frames=6, seed=3, width=320, height=180, workers=1)
    source, out, metrics = tmp_path / "epoch_19.pth", tmp_path / "seqnet.pt", tmp_path / "m.json"
    torch.save({"model": to_seqnet(ours), "epoch": 19}, source)
    assert main(["import-checkpoint", "seqnet", str(source), "--out", str(out)]) == 0
    assert main(["eval", str(out), "--dataset", "prw", "--root", str(root), "--min-size", "180",
                 "--max-size", "320", "--use-gt-boxes", "--no-progress", "--json", str(metrics)]) == 0
    values = json.loads(metrics.read_text())
    assert values["det_recall"] == 1.0  # GT boxes as the gallery: every person is there
    assert 0.0 <= values["mAP"] <= 1.0
