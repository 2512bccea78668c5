"""Config: YAML loading, dotted overrides, errors naming the key, translation to kwargs."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from personsearch.config import (
    Config,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    model_kwargs,
    train_sizes,
)
from personsearch.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_defaults_and_yaml_values(tmp_path):
    cfg = load_config(write(tmp_path, "solver:\n  lr: 0.01\n  lr_steps: [3, 5]\ndata:\n  batch_size: 2\n"))
    assert cfg.solver.lr == 0.01 and cfg.solver.lr_steps == (3, 5)
    assert cfg.data.batch_size == 2 and cfg.solver.momentum == 0.9
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.solver.lr = 1.0  # type: ignore[misc]


def test_overrides_are_parsed_with_yaml(tmp_path):
    path = write(tmp_path, "solver:\n  lr: 0.01\n")
    cfg = load_config(path, ["solver.lr=0.002", "data.multi_scale=[[1333, 800], [667, 400]]",
                             "solver.clip_grad_norm=null", "method.params.queue_size=30",
                             "train.out_dir=runs/x", "solver.weight_decay=1"])
    assert cfg.solver.lr == 0.002
    assert cfg.data.multi_scale == ((1333, 800), (667, 400))
    assert train_sizes(cfg) == [(1333, 800), (667, 400)]
    assert cfg.solver.clip_grad_norm is None
    assert cfg.method.params == {"queue_size": 30}
    assert cfg.train.out_dir == "runs/x"
    assert cfg.solver.weight_decay == 1.0 and isinstance(cfg.solver.weight_decay, float)


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("solver:\n  lrr: 0.1\n", [], r"solver\.lrr: unknown key"),
        ("", ["solver.lrr=0.1"], r"solver\.lrr: unknown key"),
        ("", ["nosection.x=1"], r"nosection: unknown key"),
        ("solver:\n  lr: fast\n", [], r"solver\.lr: expected a number, got 'fast'"),
        ("", ["data.batch_size=2.5"], r"data\.batch_size: expected an integer"),
        ("", ["data.flip=1"], r"data\.flip: expected true/false"),
        ("", ["data.multi_scale=[[1, 2, 3]]"], r"data\.multi_scale\[0\]: expected a list of 2"),
        ("", ["model.anchor_sizes=[32, big]"], r"model\.anchor_sizes\[1\]: expected an integer"),
        ("", ["solver.epochs=0"], r"solver\.epochs: must be >= 1"),
        ("", ["solver.warmup_iters=10", "solver.warmup_epochs=1"], r"not both"),
        ("", ["solver.lr"], r"expected KEY=VALUE"),
        ("solver: 3\n", [], r"solver: expected a mapping"),
        ("", ["solver.lr.x=1"], r"solver\.lr: expected a number"),
        ("solver:\n  lr: 0.1\n", ["solver.lr.x=1"], r"solver\.lr is not a section"),
    ],
)
def test_errors_name_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), overrides)


def test_error_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg\.yaml: solver\.lr"):
        load_config(write(tmp_path, "solver:\n  lr: fast\n"))
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "solver: [\n"))


def test_dump_roundtrip():
    cfg = config_from_dict({"data": {"multi_scale": [[2000, 1200]]}, "method": {"name": "cgps"}})
    assert config_from_dict(config_to_dict(cfg)) == cfg
    import yaml

    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg


def test_model_kwargs_match_the_model_contract():
    kwargs = model_kwargs(Config())
    assert list(kwargs) == [f.name for f in dataclasses.fields(ModelConfig)]
    # the architecture contract's defaults (docs/architecture.md)
    assert kwargs["anchor_sizes"] == (32, 64, 128, 256, 512)
    assert kwargs["roi_bg_iou_thresh"] == 0.5 and kwargs["embedding_dim"] == 256
    from personsearch.models import build_model

    parameters = inspect.signature(build_model).parameters
    assert set(kwargs) == set(parameters)
    for name, value in kwargs.items():
        assert parameters[name].default == value, name


def test_presets_exist():
    names = {p.stem for p in CONFIGS}
    assert {"seqnet_prw", "cgps_prw"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_preset_loads(path):
    cfg = load_config(path)
    assert cfg.method.name
    assert model_kwargs(cfg)


def test_spec_values_of_first_presets():
    seqnet = load_config(Path(CONFIGS[0]).parent / "seqnet_prw.yaml")
    assert (seqnet.solver.lr, seqnet.solver.lr_steps, seqnet.solver.epochs) == (0.003, (16,), 18)
    assert (seqnet.solver.warmup_epochs, seqnet.solver.warmup_factor) == (1.0, 0.001)
    cgps = load_config(Path(CONFIGS[0]).parent / "cgps_prw.yaml")
    assert (cgps.solver.lr, cgps.solver.lr_steps, cgps.solver.epochs) == (0.001, (16, 22), 24)
    assert (cgps.solver.warmup_iters, cgps.solver.warmup_factor) == (2242, 0.005)
    assert len(train_sizes(cgps)) == 6 and cgps.model.roi_bg_iou_thresh == 0.1


@pytest.mark.parametrize("text, overrides, message", [
    ("method:\n  name: ssl\n  params:\n    use_dml: true\n    bogus_key: 3\n", [],
     r"cfg\.yaml: method\.params\.bogus_key: unknown key"),
    ("method:\n  name: seqnet\n", ["method.params.oim_wieght=0.5"],
     r"cfg\.yaml: method\.params\.oim_wieght: unknown key"),
    ("method:\n  name: no_such_method\n", [], r"cfg\.yaml: method\.name"),
])
def test_method_params_errors_name_the_config_file(tmp_path, text, overrides, message):
    # Issue 13: an unknown method.params key was reported (by build_method) without the file.
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), overrides)
