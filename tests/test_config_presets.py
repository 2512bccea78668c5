"""The shipped presets (src/personsearch/configs, linked as configs/): each resolves to the values
recorded in config_presets_resolved.yaml (written from the full preset files before they became
deltas with ``base:``), each delta holds only what differs from its base, and the dataset of
training and of evaluation agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from personsearch.config import (
    Config,
    config_to_dict,
    load_config,
    preset_description,
    preset_paths,
    read_config_file,
)

RECORDED = yaml.safe_load((Path(__file__).parent / "config_presets_resolved.yaml").read_text())
PRESETS = preset_paths()
DEFAULTS = config_to_dict(Config())


def typed(value):
    """Value with its type spelled out (10 and 10.0 differ, as they would in a method)."""
    return yaml.safe_dump(value, default_flow_style=True)


def test_the_shipped_presets_are_the_recorded_ones():
    assert sorted(PRESETS) == sorted(RECORDED)
    assert {"ssl_synthetic", "seqnet_prw", "cgps_cuhk", "dicl_prw", "ssl_arxiv_cuhk"} <= set(PRESETS)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_preset_resolves_to_its_recorded_values(name):
    resolved = config_to_dict(load_config(PRESETS[name]))
    for section, values in resolved.items():
        for key, value in values.items():
            # a setting added after the recording must keep its default in every preset
            expected = RECORDED[name][section].get(key, DEFAULTS[section][key])
            assert typed(value) == typed(expected), f"{name}: {section}.{key}"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_delta_holds_only_what_differs_from_its_base(name):
    own = yaml.safe_load(PRESETS[name].read_text())
    if "base" not in own:
        return
    base = config_to_dict(load_config(PRESETS[name].parent / own.pop("base")))
    same_method = own.get("method", {}).get("name", base["method"]["name"]) == base["method"]["name"]
    for section, values in own.items():
        for key, value in values.items():
            if section == "method" and key == "params":
                for param, param_value in value.items():
                    if same_method and param in base["method"]["params"]:
                        assert typed(param_value) != typed(base["method"]["params"][param]), \
                            f"{name}: method.params.{param} repeats its base's value"
                continue
            assert typed(value) != typed(base[section][key]), f"{name}: {section}.{key} repeats its base's value"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_evaluation_uses_the_training_dataset_and_output_is_named_after_the_preset(name):
    cfg = load_config(PRESETS[name])
    assert cfg.eval.format == cfg.data.format
    assert cfg.train.out_dir == f"out/{name}"
    if name.endswith(("_prw", "_cuhk")):  # a paper preset: the dataset its name says
        assert name.rsplit("_", 1)[-1] == {"prw": "prw", "cuhk-sysu": "cuhk"}[cfg.data.format]
    else:  # a CPU preset on generated data
        assert cfg.data.root.startswith("out/") and cfg.model.backbone == "small"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_says_what_it_is_and_how_to_run_it(name):
    header = [line for line in PRESETS[name].read_text().splitlines() if line.startswith("#")]
    assert preset_description(PRESETS[name]).endswith(".")
    commands = [line for line in header if line.startswith("#   ") and "personsearch" in line]
    assert commands, f"{name}: no command line (#   personsearch ...) in the header"
    for line in commands:
        if "personsearch train" in line:
            assert f"configs/{name}.yaml" in line, line


def test_cuhk_presets_differ_from_their_prw_base_in_the_dataset():
    for name in (n for n in PRESETS if n.endswith("_cuhk")):
        raw = read_config_file(PRESETS[name])
        prw = read_config_file(PRESETS[name.replace("_cuhk", "_prw")])
        assert (raw["data"]["format"], prw["data"]["format"]) == ("cuhk-sysu", "prw"), name
        assert yaml.safe_load(PRESETS[name].read_text())["base"] == name.replace("_cuhk", "_prw.yaml")
