"""Detection losses of the one-step model (RPN, stage-1 Faster R-CNN head, stage-2 re-id head).

Pure functions returning ``dict[str, Tensor]`` of unweighted losses (the method's
``loss_weights`` weight them by name; SeqNet weights ``loss_det_box`` by 10).

Shape glossary
--------------
S              sampled candidates (anchors or RoIs) of the whole batch
objectness     [S] RPN logits of the sampled anchors
labels         [S] int64, 1 person / 0 background (only sampled candidates are passed)
pred_deltas    [S, 4] box deltas predicted for the person class
target_deltas  [S, 4] encoded targets (rows of negatives are ignored)
class_logits   [S, 2] stage-1 softmax logits (0 background, 1 person)
box_regression [S, 4 * 2] class-specific deltas (columns 4:8 are the person class)
person_logits  [S] stage-2 NAE person logits (binary)

Box losses are summed over the positives and divided by the number of sampled candidates S
(torchvision and mmdetection normalise the same way); with no positive (an image without
persons) they are an exact zero that still carries the graph. With S = 0 every loss is zero.
Which box loss is a named setting (``box_loss``, one of ``BOX_LOSSES``), so that each preset
uses its reference's:
- ``"l1"``: |x| — SeqNet's reference environment (torchvision 0.4) in the RPN; mmdetection's
  L1Loss in the RPN and the RoI head (CGPS, DICL);
- ``"smooth_l1"``: smooth-L1 with beta 1 — SeqNet's two RoI heads (its own loss code, and
  torchvision 0.4's ``fastrcnn_loss``);
- ``"smooth_l1_beta_1_9"``: smooth-L1 with beta 1/9 — modern torchvision (RPN and RoI head);
  the default, as the code had it before the setting existed.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

SMOOTH_L1_BETA = 1.0 / 9.0
BOX_LOSSES = ("l1", "smooth_l1", "smooth_l1_beta_1_9")
DEFAULT_BOX_LOSS = "smooth_l1_beta_1_9"


def check_box_loss(box_loss: str) -> str:
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box loss must be one of {', '.join(BOX_LOSSES)}; got {box_loss!r}")
    return box_loss


def _positive_box_loss(pred_deltas: Tensor, target_deltas: Tensor, labels: Tensor, box_loss: str) -> Tensor:
    """The box loss over the positives, divided by the number of sampled candidates."""
    positive = labels > 0
    pred, target = pred_deltas[positive].float(), target_deltas[positive].float()
    if check_box_loss(box_loss) == "l1":
        loss = F.l1_loss(pred, target, reduction="sum")
    else:
        beta = 1.0 if box_loss == "smooth_l1" else SMOOTH_L1_BETA
        loss = F.smooth_l1_loss(pred, target, beta=beta, reduction="sum")
    return loss / max(labels.numel(), 1)


def _zero(*tensors: Tensor) -> Tensor:
    return sum(t.float().sum() * 0.0 for t in tensors)


def rpn_loss(objectness: Tensor, pred_deltas: Tensor, labels: Tensor, target_deltas: Tensor,
             box_loss: str = DEFAULT_BOX_LOSS) -> dict[str, Tensor]:
    """{loss_rpn_objectness: BCE over sampled anchors, loss_rpn_box: ``box_loss``}."""
    check_box_loss(box_loss)
    if labels.numel() == 0:
        zero = _zero(objectness, pred_deltas)
        return {"loss_rpn_objectness": zero, "loss_rpn_box": zero.clone()}
    objectness_loss = F.binary_cross_entropy_with_logits(objectness.float(), labels.float())
    return {
        "loss_rpn_objectness": objectness_loss,
        "loss_rpn_box": _positive_box_loss(pred_deltas, target_deltas, labels, box_loss),
    }


def _person_deltas(box_regression: Tensor) -> Tensor:
    """[S, 8] class-specific deltas -> [S, 4] of the person class."""
    return box_regression.reshape(box_regression.shape[0], -1, 4)[:, 1]


def fast_rcnn_loss(
    class_logits: Tensor, box_regression: Tensor, labels: Tensor, target_deltas: Tensor,
    box_loss: str = DEFAULT_BOX_LOSS,
) -> dict[str, Tensor]:
    """Stage 1: {loss_det_cls: softmax CE, loss_det_box: ``box_loss`` on the person deltas}."""
    check_box_loss(box_loss)
    if labels.numel() == 0:
        zero = _zero(class_logits, box_regression)
        return {"loss_det_cls": zero, "loss_det_box": zero.clone()}
    return {
        "loss_det_cls": F.cross_entropy(class_logits.float(), labels),
        "loss_det_box": _positive_box_loss(_person_deltas(box_regression), target_deltas, labels, box_loss),
    }


def reid_head_loss(
    person_logits: Tensor, box_regression: Tensor, labels: Tensor, target_deltas: Tensor,
    box_loss: str = DEFAULT_BOX_LOSS,
) -> dict[str, Tensor]:
    """Stage 2: {loss_reid_box: ``box_loss`` of the BN-neck regressor, loss_person: BCE on the
    NAE person logit}."""
    check_box_loss(box_loss)
    if labels.numel() == 0:
        zero = _zero(person_logits, box_regression)
        return {"loss_reid_box": zero, "loss_person": zero.clone()}
    return {
        "loss_reid_box": _positive_box_loss(_person_deltas(box_regression), target_deltas, labels, box_loss),
        "loss_person": F.binary_cross_entropy_with_logits(person_logits.float(), labels.float()),
    }
