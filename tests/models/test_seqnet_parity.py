"""Numerical parity with SeqNet's own code (the proof that our detector is SeqNet's network).

SeqNet's model is built from its source at run time (pinned commit edec285c, in the folder
named by the environment variable ``PERSONSEARCH_SEQNET_SOURCE``, which ``make parity`` sets;
docs/reference_parity.md) with seeded random weights, converted with ``import-checkpoint``'s converter, and both
run on the same images at 900 x 1500:
- query embeddings at given boxes: cosine >= 0.9999;
- gallery detections matched by IoU >= 0.95 for >= 95% of the boxes, scores within 1e-3,
  embeddings cosine >= 0.999.
SeqNet's code needs torchvision: the test runs in ``.venv-ref`` (``make parity``) and skips,
with its reason, where torchvision or the source is missing or the variable is unset.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SEQNET_SOURCE_VARIABLE = "PERSONSEARCH_SEQNET_SOURCE"
SEQNET_SOURCE = Path(os.environ[SEQNET_SOURCE_VARIABLE]) if os.environ.get(SEQNET_SOURCE_VARIABLE) else None


def _torchvision_reason() -> str | None:
    try:
        import torchvision  # noqa: F401

        torch.ops.torchvision.nms  # noqa: B018  (raises when the compiled ops do not load)
    except Exception as error:  # any failure means "cannot run SeqNet's code here"
        return f"torchvision does not load here ({type(error).__name__}: {str(error).splitlines()[0]}); run `make parity`"
    return None


def _skip_reason() -> str | None:
    if SEQNET_SOURCE is None:
        return (f"{SEQNET_SOURCE_VARIABLE} is not set (the folder of SeqNet's source at commit "
                "edec285c; `make parity` sets it)")
    if not (SEQNET_SOURCE / "models" / "seqnet.py").is_file():
        return f"SeqNet's source is not at {SEQNET_SOURCE} ({SEQNET_SOURCE_VARIABLE}): no models/seqnet.py there"
    return _torchvision_reason()


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

#: (height, width) of the test scenes. 600x1000 and 480x800 resize exactly to 900x1500; 700x1100
#: does not (SeqNet scales boxes per axis by the rounded size, we by one factor: < 1 px apart).
IMAGE_SIZES = [(600, 1000), (700, 1100)]
QUERY_BOXES = [
    [[100.0, 80.0, 160.0, 260.0], [400.5, 120.25, 470.0, 330.0], [700.0, 300.0, 760.0, 500.0]],
    [[50.0, 50.0, 120.0, 250.0], [800.0, 400.0, 900.0, 650.0]],
]


def _import_seqnet():
    """SeqNet's modules (``models.seqnet``, ``defaults``) from its source folder."""
    saved_path = list(sys.path)
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.") or n == "defaults"]:
        del sys.modules[name]
    sys.path.insert(0, str(SEQNET_SOURCE))
    try:
        seqnet = importlib.import_module("models.seqnet")
        defaults = importlib.import_module("defaults")
    finally:
        sys.path[:] = saved_path
    return seqnet, defaults


def _randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Seeded random weights everywhere, with BatchNorm statistics that keep activations in a
    sane range and score layers biased so that persons are detected."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.5)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (1.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.01)
        # The last block of every ResNet stage damped, so the 16-block network stays in range.
        for name, module in model.named_modules():
            if name.endswith("bn3"):
                module.weight.mul_(0.2)
        rpn_logits = model.rpn.head.cls_logits
        rpn_logits.weight.mul_(3.0)
        predictor = model.roi_heads.faster_rcnn_predictor
        predictor.cls_score.weight.mul_(0.5)
        predictor.cls_score.bias.copy_(torch.tensor([0.0, 0.5]))
        predictor.bbox_pred.weight.mul_(0.05)
        regressor = model.roi_heads.box_predictor.bbox_pred
        regressor[0].weight.mul_(0.05)
        regressor[1].weight.mul_(0.05)


def _images(generator: torch.Generator) -> list[np.ndarray]:
    """Smooth random scenes (uint8 RGB): low-frequency noise upsampled, darker at the query boxes."""
    images = []
    for height, width in IMAGE_SIZES:
        coarse = torch.rand(1, 3, height // 20, width // 20, generator=generator)
        image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
        for x1, y1, x2, y2 in QUERY_BOXES[len(images)]:
            image[:, int(y1):int(y2), int(x1):int(x2)] *= 0.3
        images.append((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return images


def build_reference() -> torch.nn.Module:
    """SeqNet's model from its source, seeded random weights, eval mode."""
    import torchvision

    seqnet, defaults = _import_seqnet()
    resnet_module = torchvision.models.resnet
    original = resnet_module.__dict__["resnet50"]
    # SeqNet asks for ImageNet weights (pretrained=True): no download here, random weights.
    resnet_module.__dict__["resnet50"] = lambda pretrained=False, **kwargs: original(weights=None)
    try:
        cfg = defaults.get_default_cfg()
        cfg.MODEL.LOSS.LUT_SIZE, cfg.MODEL.LOSS.CQ_SIZE = 16, 16
        torch.manual_seed(0)
        reference = seqnet.SeqNet(cfg)
    finally:
        resnet_module.__dict__["resnet50"] = original
    _randomise(reference, torch.Generator().manual_seed(1))
    return reference.eval()


def build_ours(reference: torch.nn.Module, folder: Path):
    """Save SeqNet's state dict as its released files are laid out, import it, load it."""
    from personsearch.engine.checkpoint import load_model, save_checkpoint
    from personsearch.engine.reference_checkpoints import import_reference_checkpoint

    source = folder / "epoch_19.pth"
    torch.save({"model": reference.state_dict(), "epoch": 19}, source)
    out = folder / "imported.pt"
    save_checkpoint(out, import_reference_checkpoint("seqnet", source, "prw"))
    model, info = load_model(out)
    return model, info, out


@pytest.fixture(scope="module")
def models():
    return (build_reference(),)


@pytest.fixture(scope="module")
def ours(models, tmp_path_factory):
    return build_ours(models[0], tmp_path_factory.mktemp("seqnet_parity"))


def _theirs(reference, image: np.ndarray, boxes: list[list[float]] | None):
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        if boxes is None:
            return reference([tensor])[0]
        return torch.cat(reference([tensor], [{"boxes": torch.tensor(boxes)}]))


def _ours_queries(model, image: np.ndarray, boxes: list[list[float]]) -> torch.Tensor:
    from personsearch.data.transforms import batch_images, preprocess

    tensor, scale = preprocess(image, 900, 1500)
    batch, sizes = batch_images([tensor])
    return model.embed_boxes(batch, sizes, [torch.tensor(boxes) * scale])[0]


def _ours_detections(model, image: np.ndarray):
    from personsearch.data.transforms import batch_images, preprocess

    tensor, scale = preprocess(image, 900, 1500)
    batch, sizes = batch_images([tensor])
    detections = model.detect(batch, sizes)[0]
    return detections.boxes / scale, detections.scores, detections.embeddings


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from personsearch.ops.boxes import box_iou

    return box_iou(a.double(), b.double())


def test_query_embeddings_equal(models, ours):
    reference = models[0]
    model = ours[0]
    for image, boxes in zip(_images(torch.Generator().manual_seed(2)), QUERY_BOXES):
        theirs = _theirs(reference, image, boxes)
        mine = _ours_queries(model, image, boxes)
        cosine = torch.nn.functional.cosine_similarity(theirs.double(), mine.double(), dim=1)
        assert float(cosine.min()) >= 0.9999, cosine.tolist()


def test_gallery_detections_equal(models, ours):
    reference = models[0]
    model = ours[0]
    total = matched = 0
    for image in _images(torch.Generator().manual_seed(2)):
        theirs = _theirs(reference, image, None)
        boxes, scores, embeddings = _ours_detections(model, image)
        assert theirs["boxes"].shape[0] >= 5, "the random model must detect persons for the test to mean anything"
        # SeqNet hands score-weighted embeddings (CWS); ours are unit norm and weighted by the caller.
        their_embeddings = theirs["embeddings"] / theirs["scores"][:, None]
        iou = _iou(theirs["boxes"], boxes)
        for i in range(theirs["boxes"].shape[0]):
            total += 1
            if boxes.shape[0] == 0:
                continue
            j = int(iou[i].argmax())
            if float(iou[i, j]) < 0.95:
                continue
            assert abs(float(theirs["scores"][i]) - float(scores[j])) <= 1e-3
            cosine = torch.nn.functional.cosine_similarity(their_embeddings[i:i + 1].double(), embeddings[j:j + 1].double())
            assert float(cosine) >= 0.999
            matched += 1
        assert abs(theirs["boxes"].shape[0] - boxes.shape[0]) <= max(1, 0.05 * theirs["boxes"].shape[0])
    assert matched >= 0.95 * total, (matched, total)


def test_imported_checkpoint_carries_seqnet_test_settings(ours):
    _, info, _ = ours
    assert info["method"] == "seqnet" and info["epoch"] == 19
    assert info["config"]["eval"]["min_size"] == 900 and info["config"]["eval"]["max_size"] == 1500
