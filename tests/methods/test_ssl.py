"""methods/ssl.py: dynamic versus fixed DML threshold; "original scale only" exemplars."""

import math

import pytest
import torch

from personsearch.errors import ConfigError
from personsearch.methods.base import validate_params
from personsearch.methods.ssl import SSLMethod
from personsearch.models.exemplars import exemplar_embeddings


def test_threshold_dynamic_follows_eq9():
    method = SSLMethod()  # t_s 0.6, alpha 0.1, beta -0.1
    assert method.threshold(0) == pytest.approx(0.7)
    assert method.threshold(10) == pytest.approx(0.6 + 0.1 * math.exp(-1.0))
    custom = SSLMethod(t_s=0.5, alpha=0.2, beta=-0.05)
    assert custom.threshold(20) == pytest.approx(0.5 + 0.2 * math.exp(-1.0))


def test_threshold_fixed_ignores_the_epoch():
    method = SSLMethod(fixed_threshold=0.75)
    assert [method.threshold(e) for e in (0, 3, 50)] == [0.75, 0.75, 0.75]


def test_scale_loss_without_any_exemplar_is_refused():
    with pytest.raises(ConfigError, match=r"method\.params\.scales: .*needs exemplars"):
        SSLMethod(scales=[], original_scale=False)
    # at config load, before anything is built
    with pytest.raises(ConfigError, match="needs exemplars"):
        validate_params(SSLMethod, {"scales": [], "original_scale": False})
    assert validate_params(SSLMethod, {"scales": [], "use_scale_loss": False}).scales == ()


def test_original_scale_only_duplicates_the_original_exemplar():
    from personsearch.models import build_model

    torch.manual_seed(0)
    model = build_model(backbone="small", rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=10,
                        box_score_thresh=0.0, detections_per_image=5).eval()
    method = SSLMethod(scales=[], original_scale=True, use_masks=False)
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    boxes = [torch.tensor([[4.0, 4.0, 30.0, 60.0], [40.0, 2.0, 90.0, 50.0]])]
    with torch.no_grad():
        exemplars = method._exemplars(model, images, boxes, None)
        original = exemplar_embeddings(model, images, boxes, [])
    assert exemplars.shape == (2, 2, model.embedding_dim)  # K + 1 = 2
    assert torch.equal(exemplars[:, 0], exemplars[:, 1])
    assert torch.equal(exemplars[:, :1], original)
