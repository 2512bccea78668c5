"""``personsearch config list`` / ``config show``: the presets with their descriptions, and a
config printed fully resolved (base: chain merged, overrides applied) as YAML."""

from __future__ import annotations

import yaml

from personsearch.cli.main import main
from personsearch.config import config_from_dict, config_to_dict, load_config, preset_paths


def test_list_names_every_preset_with_its_description(capsys):
    assert main(["config", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(preset_paths())
    by_name = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines}
    assert by_name["cgps_cuhk"] == "CGPS on CUHK-SYSU."
    assert by_name["seqnet_prw"] == "SeqNet (fully supervised reference) on PRW."


def test_show_prints_the_resolved_config_with_overrides(capsys, tmp_path):
    (tmp_path / "mine.yaml").write_text("base: base.yaml\nsolver:\n  epochs: 2\n")
    (tmp_path / "base.yaml").write_text("method:\n  name: cgps\n  params: {min_samples: 3}\n")
    assert main(["config", "show", str(tmp_path / "mine.yaml"), "--set", "solver.lr=0.25"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["solver"]["epochs"] == 2 and shown["solver"]["lr"] == 0.25
    assert shown["method"] == {"name": "cgps", "params": {"min_samples": 3}}
    assert shown["model"]["backbone"] == "resnet50"  # defaults are printed too
    assert main(["config", "show", "dicl_cuhk"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert config_from_dict(shown) == load_config("dicl_cuhk")
    assert shown == config_to_dict(load_config("dicl_cuhk"))


def test_show_errors_are_one_line(capsys):
    assert main(["config", "show", "no_such_preset"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("personsearch config: error: no_such_preset: no such config file and no preset")
    assert main(["config", "show", "ssl_synthetic", "--set", "model.backbone=resnet101"]) == 2
    err = capsys.readouterr().err
    assert "model.backbone: expected one of resnet50, resnet18, small, got 'resnet101'" in err
