"""Config: YAML loading, dotted overrides, errors naming the key, translation to kwargs."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest

from personsearch.config import (
    PRESETS_DIR,
    Backbone,
    BoxLoss,
    ChannelOrder,
    Config,
    DataFormat,
    ModelConfig,
    ResnetStyle,
    RoiPooling,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    merge_over_base,
    model_kwargs,
    read_config_file,
    train_sizes,
)
from personsearch.errors import ConfigError

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


def choice_fields() -> list[tuple[str, tuple]]:
    """(dotted key, allowed values) of every Literal-typed setting, found from the type hints."""
    found = []
    for section in dataclasses.fields(Config):
        hints = typing.get_type_hints(typing.get_type_hints(Config)[section.name])
        for name, hint in hints.items():
            literals = [h for h in (hint, *typing.get_args(hint)) if typing.get_origin(h) is typing.Literal]
            if literals:
                found.append((f"{section.name}.{name}", typing.get_args(literals[0])))
    return found


def test_the_choice_settings_are_typed_as_literals():
    keys = {key for key, _ in choice_fields()}
    assert {"data.format", "eval.format", "model.backbone", "model.roi_pooling", "model.roi_head",
            "model.rpn_box_loss", "model.roi_box_loss", "solver.lr_scaling"} <= keys


@pytest.mark.parametrize("key, allowed", choice_fields(), ids=[key for key, _ in choice_fields()])
def test_a_wrong_choice_names_the_key_the_value_and_the_choices(tmp_path, key, allowed):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, ""), [f"{key}=resnet101"])
    assert str(error.value).startswith(f"{tmp_path / 'cfg.yaml'}: {key}: ")
    assert "'resnet101'" in str(error.value) and ", ".join(allowed) in str(error.value)
    for value in allowed:  # every allowed value loads
        assert load_config(write(tmp_path, ""), [f"{key}={value}"])


def test_backbone_error_message(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg\.yaml: model\.backbone: expected one of resnet50, "
                                          r"resnet18, small, got 'resnet101'"):
        load_config(write(tmp_path, ""), ["model.backbone=resnet101"])


def test_choice_lists_match_the_code_that_implements_them():
    from personsearch.data.splits import FORMATS
    from personsearch.losses.detection import BOX_LOSSES
    from personsearch.models.backbones import _ARCHS, CHANNEL_ORDERS, RESNET_STYLES
    from personsearch.models.roi_heads import ROI_POOLING_KINDS

    assert typing.get_args(DataFormat) == FORMATS
    assert set(typing.get_args(Backbone)) == set(_ARCHS)
    assert typing.get_args(RoiPooling) == ROI_POOLING_KINDS
    assert typing.get_args(BoxLoss) == BOX_LOSSES
    assert typing.get_args(ResnetStyle) == RESNET_STYLES
    assert typing.get_args(ChannelOrder) == CHANNEL_ORDERS


# ------------------------------------------------------------------------- base: chains


def write_named(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_base_chain_merges_sections_key_by_key_and_replaces_lists(tmp_path):
    write_named(tmp_path / "bases", "root.yaml",
                "data: {batch_size: 3, multi_scale: [[10, 20], [30, 40]]}\n"
                "solver: {lr: 0.5, lr_steps: [4, 8]}\nmethod: {name: seqnet, params: {queue_size: 7}}\n")
    write_named(tmp_path / "bases", "middle.yaml",  # relative to its own folder
                "base: root.yaml\ndata: {multi_scale: [[50, 60]]}\nmethod: {params: {det_box_weight: 2.0}}\n")
    child = write_named(tmp_path, "child.yaml", "base: bases/middle.yaml\nsolver: {lr: 0.25}\n")
    cfg = load_config(child)
    assert cfg.data.batch_size == 3 and cfg.data.multi_scale == ((50, 60),)
    assert cfg.solver.lr == 0.25 and cfg.solver.lr_steps == (4, 8)
    assert cfg.method.params == {"queue_size": 7, "det_box_weight": 2.0}
    assert "base" not in read_config_file(child)


def test_a_delta_naming_another_method_starts_from_empty_params(tmp_path):
    write_named(tmp_path, "root.yaml", "method: {name: seqnet, params: {queue_size: 7}}\n")
    child = write_named(tmp_path, "child.yaml", "base: root.yaml\nmethod: {name: cgps, params: {min_samples: 3}}\n")
    assert load_config(child).method.params == {"min_samples": 3}
    assert merge_over_base({"method": {"params": {"a": 1}}}, {"method": {"name": "cgps"}}) \
        == {"method": {"name": "cgps"}}
    assert merge_over_base({"method": {"params": {"a": 1}}}, {"method": {"name": "seqnet"}}) \
        == {"method": {"name": "seqnet", "params": {"a": 1}}}  # seqnet: the default method


def test_base_cycle_is_an_error_naming_the_files(tmp_path):
    write_named(tmp_path, "a.yaml", "base: b.yaml\n")
    write_named(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: base cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    write_named(tmp_path, "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match=r"base cycle"):
        load_config(tmp_path / "self.yaml")


@pytest.mark.parametrize("text, message", [
    ("base: missing.yaml\n", r"cfg\.yaml: base missing\.yaml: no such file"),
    ("base: 3\n", r"cfg\.yaml: base: expected a config file name, got 3"),
    ("base: bad.yaml\n", r"cfg\.yaml \(bases: \S*bad\.yaml\): solver: expected a mapping"),
])
def test_base_errors_name_the_file(tmp_path, text, message):
    write_named(tmp_path, "bad.yaml", "solver: 3\n")
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_preset_is_named_by_path_or_by_name(tmp_path, monkeypatch):
    by_name = load_config("ssl_synthetic", ["solver.lr=0.5"])
    assert by_name == load_config(PRESETS_DIR / "ssl_synthetic.yaml", ["solver.lr=0.5"])
    assert by_name.solver.lr == 0.5 and by_name.method.name == "ssl"
    assert load_config("ssl_synthetic.yaml") == load_config(PRESETS_DIR / "ssl_synthetic.yaml")
    monkeypatch.chdir(tmp_path)  # a file of that name in the working folder wins
    write_named(tmp_path, "ssl_synthetic.yaml", "solver: {lr: 0.125}\n")
    assert load_config("ssl_synthetic.yaml").solver.lr == 0.125
    with pytest.raises(ConfigError, match=r"ssl_synthtic: no such config file and no preset .*ssl_synthetic"):
        load_config("ssl_synthtic")


def test_spec_values_of_first_presets():
    seqnet = load_config("seqnet_prw")
    assert (seqnet.solver.lr, seqnet.solver.lr_steps, seqnet.solver.epochs) == (0.003, (16,), 18)
    assert (seqnet.solver.warmup_epochs, seqnet.solver.warmup_factor) == (1.0, 0.001)
    cgps = load_config("cgps_prw")
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
