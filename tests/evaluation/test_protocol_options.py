"""Protocol options that do not apply, or are out of range, are refused before any work, with
the flag's name (they were tracebacks from inside the evaluation after the model had run)."""

import pytest

from personsearch.cli.main import main
from personsearch.errors import ConfigError
from personsearch.evaluation.evaluators import check_protocol_options


@pytest.mark.parametrize("options, message", [
    ({"gallery_size": 7}, r"--gallery-size must be one of 50, 100, 500, 1000, 2000, 4000 or -1"),
    ({"query_from_detection": True}, r"--query-from-detection is a PRW protocol option"),
    ({"cross_camera": True}, r"--cross-camera is a PRW protocol option"),
    ({"det_thresh": float("nan")}, r"--det-thresh must be a finite number"),
])
def test_cuhk_sysu_refuses_what_does_not_apply(options, message):
    with pytest.raises(ConfigError, match=message):
        check_protocol_options("cuhk-sysu", **options)


def test_valid_options_pass():
    for size in (50, 100, 4000, -1):
        check_protocol_options("cuhk-sysu", gallery_size=size)
    check_protocol_options("prw", gallery_size=7, cross_camera=True, query_from_detection=True)
    with pytest.raises(ConfigError, match="--det-thresh"):
        check_protocol_options("prw", det_thresh=float("inf"))


@pytest.mark.parametrize("command", ["eval", "evaluate-results"])
def test_the_commands_check_first(tmp_path, capsys, command):
    # nothing exists at these paths: the option is refused before any file is read
    args = ([command, str(tmp_path / "missing.pt")] if command == "eval" else [command]) + [
        "--dataset", "cuhk-sysu", "--root", str(tmp_path / "no_root"), "--gallery-size", "7"]
    if command == "evaluate-results":
        args += ["--results", str(tmp_path / "missing.npz")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gallery-size must be one of" in err[0]
