"""cli/ablate.py: the overrides of every ablation row (as they land in a loaded config), the
query scale gaps and the markdown table."""

from pathlib import Path

import numpy as np
import pytest

from personsearch.cli.ablate import ROWS, format_table, query_scale_gaps, row_overrides
from personsearch.config import load_config
from personsearch.data.records import SceneRecord
from personsearch.errors import ConfigError

SSL_SYNTHETIC = Path(__file__).resolve().parents[2] / "configs" / "ssl_synthetic.yaml"


def _params(cfg_path, name, base=()):
    base_cfg = load_config(cfg_path, list(base))
    return load_config(cfg_path, list(base) + row_overrides(name, base_cfg)).method.params


EXPECTED = {  # row -> params it must set (besides the config's own)
    "baseline": {"use_scale_loss": False, "use_dml": False, "use_cluster": True},
    "dml": {"use_scale_loss": False, "use_dml": True, "use_cluster": True},
    "sl": {"use_scale_loss": True, "use_dml": False, "use_cluster": True},
    "full": {"use_scale_loss": True, "use_dml": True, "use_cluster": True},
    "full_no_cluster": {"use_scale_loss": True, "use_dml": True, "use_cluster": False},
    "full_quaduplet": {"use_scale_loss": True, "use_dml": True, "use_cluster": True, "use_quaduplet": True},
    "full_no_quaduplet": {"use_scale_loss": True, "use_dml": True, "use_cluster": True,
                          "use_quaduplet": False},
    "original_scale": {"use_scale_loss": True, "use_dml": True, "scales": [],
                       "original_scale": True},
    "one_scale": {"use_scale_loss": True, "use_dml": True, "scales": [[96, 40]]},
    "no_mask": {"use_scale_loss": True, "use_dml": True, "use_masks": False},
    "fixed_threshold": {"use_scale_loss": True, "use_dml": True, "fixed_threshold": 0.7},
}


def test_every_row_is_tested():
    assert set(EXPECTED) == set(ROWS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_row_overrides_land_in_the_config(name):
    params = _params(SSL_SYNTHETIC, name)
    for key, value in EXPECTED[name].items():
        assert params[key] == value, key
    assert params["beta"] == -0.1  # the rest of the config is kept


def test_one_scale_takes_the_middle_of_the_configs_scales():
    base = ["method.params.scales=[[10,4],[20,8],[30,12],[40,16],[50,20]]"]
    assert _params(SSL_SYNTHETIC, "one_scale", base)["scales"] == [[30, 12]]
    cfg = load_config(SSL_SYNTHETIC, ["method.params.scales=[[10,4]]"])
    assert row_overrides("one_scale", cfg) == [
        "method.params.use_scale_loss=true", "method.params.use_dml=true",
        "method.params.scales=[[10, 4]]"]


def test_one_scale_without_scales_in_the_config_uses_the_default_middle_scale(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("method: {name: ssl, params: {}}\n")
    assert _params(config, "one_scale")["scales"] == [[224, 96]]


def test_unknown_row_is_a_config_error():
    cfg = load_config(SSL_SYNTHETIC)
    with pytest.raises(ConfigError, match="unknown row 'bogus'"):
        row_overrides("bogus", cfg)


def _rec(name, boxes, ids):
    return SceneRecord(name, name, 100, 200, np.asarray(boxes, np.float32), np.asarray(ids))


def test_query_scale_gaps_hand_computed():
    gallery = [
        _rec("q0.jpg", [[0, 0, 10, 40], [0, 0, 10, 400]], [1, 2]),  # query 0's own frame: skipped
        _rec("a.jpg", [[0, 0, 10, 120], [0, 0, 10, 10]], [1, 3]),   # id 1 height 120 (3x)
        _rec("b.jpg", [[0, 0, 10, 20], [0, 0, 10, 50]], [-1, 1]),   # id 1 height 50
        _rec("c.jpg", [[5, 10, 15, 30]], [2]),                      # id 2 height 20
    ]
    queries = [_rec("q0.jpg", [[0, 0, 10, 40]], [1]),     # 40 vs 120, 50 -> 3.0
               _rec("c.jpg", [[5, 10, 15, 30]], [2]),     # own frame skipped; 20 vs 400 -> 20
               _rec("a.jpg", [[0, 0, 10, 10]], [3]),      # id 3 nowhere else -> 1
               _rec("b.jpg", [[0, 0, 10, 50]], [1])]      # 50 vs 40, 120 -> 2.4
    gaps = query_scale_gaps(gallery, queries)
    np.testing.assert_allclose(gaps, [3.0, 20.0, 1.0, 2.4])


def test_format_table():
    results = {
        "baseline": {"metrics": {"mAP": 0.5, "top1": 0.625, "mAP_far_scale": float("nan"),
                                 "mAP_near_scale": 0.25, "det_ap": 0.8},
                     "diagnostics": {"diag/cluster_precision": 0.9, "diag/cluster_recall": 0.3}},
        "full": {"overrides": ["method.params.use_dml=true"],
                 "metrics": {"mAP": 0.5125, "top1": 1.0, "mAP_far_scale": 0.1,
                             "mAP_near_scale": 0.2, "det_ap": 0.75},
                 "diagnostics": {"diag/dml_precision": 0.95, "diag/dml_recall": 0.4,
                                 "diag/cluster_precision": 0.1, "diag/cluster_recall": 0.1}},
        "empty": {"metrics": {}, "diagnostics": {}},
    }
    lines = format_table(results).split("\n")
    assert lines[0].startswith("| row | mAP | top-1 | mAP, far scales (≥3×)")
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    assert lines[2] == "| baseline | 50.0 | 62.5 | – | 25.0 | 80.0 | 90.0 | 30.0 |"
    assert lines[3] == "| full | 51.2 | 100.0 | 10.0 | 20.0 | 75.0 | 95.0 | 40.0 |"
    assert lines[4] == "| empty | – | – | – | – | – | – | – |"
    assert len(lines) == 5
    # a row trained without DML shows its cluster labels even when DML numbers were logged
    results["baseline"]["diagnostics"].update({"diag/dml_precision": 0.5, "diag/dml_recall": 0.5})
    assert format_table(results).split("\n")[2].endswith("| 90.0 | 30.0 |")
