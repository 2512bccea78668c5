"""Score thresholds on the command line must be finite: a NaN matched nothing (an index built
with ``--min-score nan`` stored no person and recorded NaN in its settings) and an infinite one
everything or nothing, silently."""

import argparse

import pytest

from personsearch.cli import finite_float
from personsearch.cli.main import main


def test_finite_float():
    assert finite_float("0.25") == 0.25 and finite_float("-1e3") == -1000.0
    for text in ("nan", "inf", "-inf", "NaN", "abc", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            finite_float(text)


@pytest.mark.parametrize("args", [
    ["index", "build", "model.pt", "images", "--out", "index", "--min-score", "nan"],
    ["search", "index", "--query", "q.jpg", "--box", "1,1,5,5", "--min-score", "inf"],
])
def test_commands_refuse_non_finite_scores_before_any_work(args, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert "--min-score: expected a finite number" in capsys.readouterr().err
