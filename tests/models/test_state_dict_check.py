"""The one state-dict comparison: missing, unexpected, shape mismatches, ignored keys."""

import torch

from personsearch.models.state_dict_check import compare_state_dicts, show_keys


def test_missing_unexpected_mismatched_in_dict_order():
    expected = {"a": torch.zeros(2), "c": torch.zeros(1), "b": torch.zeros(4), "bn.num_batches_tracked": torch.zeros(())}
    given = {"x": torch.zeros(1), "b": torch.zeros(3), "a": torch.ones(2)}
    diff = compare_state_dicts(given, expected, ignore=lambda key: key.endswith("num_batches_tracked"))
    assert diff.missing == ["c"] and diff.unexpected == ["x"] and diff.mismatched == [("b", (3,), (4,))]
    assert diff
    assert not compare_state_dicts({"a": torch.ones(2)}, {"a": torch.zeros(2)})  # values are not compared
    assert compare_state_dicts({}, {"bn.num_batches_tracked": torch.zeros(())}).missing == ["bn.num_batches_tracked"]


def test_show_keys_says_how_many_in_all():
    assert show_keys(["a", "b", "c"], 2) == "a, b, ... (3 in all)"
    assert show_keys(["a", "b"], 2) == "a, b"
