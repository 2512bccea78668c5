"""Training configuration: frozen dataclasses loaded from YAML, with dotted overrides.

A config file has the sections ``data``, ``model``, ``method``, ``solver``, ``train`` and
``eval``; every key is optional (the dataclass default applies). Unknown keys and values of the
wrong type are :class:`~personsearch.errors.ConfigError` naming the dotted key, e.g.
``solver.lr: expected a number, got 'fast'``.

Overrides (``--set solver.lr=0.002``) are applied to the YAML mapping before validation; the
value is parsed with ``yaml.safe_load`` (``--set data.multi_scale=[[1333,800]]``,
``--set solver.clip_grad_norm=null``).

The config is translated into keyword arguments in ONE place: :func:`model_kwargs` gives
exactly the arguments of ``personsearch.models.build_model`` and :func:`method_kwargs` those of
``personsearch.methods.build_method``. Models and methods never see a config object.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from personsearch.errors import ConfigError


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {problem}")


# Choice-valued settings: a value outside the Literal is a ConfigError naming the key, the value
# and the allowed values (convert_value checks every Literal field from the type hints).
# tests/test_config.py checks each choice list against the code that implements the choices.
DataFormat = Literal["prw", "cuhk-sysu", "coco"]  # = personsearch.data.splits.FORMATS
Backbone = Literal["resnet50", "resnet18", "small"]  # personsearch.models.backbones
RoiPooling = Literal["roi_align", "deform_roi_pool"]  # = models.roi_heads.ROI_POOLING_KINDS
RoiHead = Literal["seqnet", "cgps"]  # two sequential heads (SeqNet) | CGPS's single head
BoxLoss = Literal["l1", "smooth_l1", "smooth_l1_beta_1_9"]  # = losses.detection.BOX_LOSSES
ResnetStyle = Literal["pytorch", "caffe"]  # = models.backbones.RESNET_STYLES
ChannelOrder = Literal["rgb", "bgr"]  # = models.backbones.CHANNEL_ORDERS
LrScaling = Literal["linear", "none"]


@dataclass(frozen=True)
class DataConfig:
    """Training data. ``multi_scale`` is a list of ``(max_size, min_size)`` pairs (CGPS: one is
    drawn per image); empty means the single ``(max_size, min_size)``."""

    format: DataFormat = "prw"
    root: str = ""
    min_size: int = 900
    max_size: int = 1500
    multi_scale: tuple[tuple[int, int], ...] = ()
    flip: bool = True
    masks: bool = False  # load person foreground masks (<root>/masks/*.png) into the targets
    workers: int = 0
    batch_size: int = 5

    def __post_init__(self) -> None:
        _check(self.min_size >= 1 and self.max_size >= 1, "data.min_size/max_size", "must be >= 1")
        _check(all(a >= 1 and b >= 1 for a, b in self.multi_scale), "data.multi_scale",
               "sizes must be >= 1")
        _check(self.workers >= 0, "data.workers", "must be >= 0")
        _check(self.batch_size >= 1, "data.batch_size", "must be >= 1")


@dataclass(frozen=True)
class ModelConfig:
    """Exactly the keyword arguments of ``personsearch.models.build_model``."""

    backbone: Backbone = "resnet50"
    backbone_weights: str | None = None
    frozen_stem: bool = True
    frozen_bn: bool = False
    separate_box_head: bool = True
    roi_pooling: RoiPooling = "roi_align"
    roi_output_size: int = 14
    roi_sampling_ratio: int = 2
    embedding_dim: int = 256
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 12000
    rpn_pre_nms_top_n_test: int = 6000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    roi_fg_iou_thresh: float = 0.5
    roi_bg_iou_thresh: float = 0.5
    roi_batch_size_per_image: int = 128
    roi_positive_fraction: float = 0.5
    box_score_thresh: float = 0.5
    box_nms_thresh: float = 0.4
    reid_nms_thresh: float = 0.5
    detections_per_image: int = 300
    roi_head: RoiHead = "seqnet"
    roi_aligned: bool = False  # RoIAlign half-pixel offset (mmcv / CGPS / DICL: true)
    rpn_min_size_train: float = 1e-3  # smallest proposal side (torchvision 1e-3; mmdet CGPS 8)
    rpn_min_size_test: float = 1e-3  # (mmdet CGPS 16)
    rpn_box_loss: BoxLoss = "smooth_l1_beta_1_9"  # smooth_l1: beta 1
    roi_box_loss: BoxLoss = "smooth_l1_beta_1_9"
    # where a bottleneck block strides: pytorch (3x3 conv, torchvision) | caffe (first 1x1, mmdet CGPS)
    resnet_style: ResnetStyle = "pytorch"
    # the input the backbone's weights expect, 0..255 pixels in channel_order; default ImageNet
    # RGB = what the data pipelines give; caffe (CGPS): bgr, 103.53/116.28/123.675, std 1
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    channel_order: ChannelOrder = "rgb"
    anchor_rounding: bool = True  # cell anchors rounded to integers (torchvision, SeqNet); mmdet 2.x (CGPS): false

    def __post_init__(self) -> None:
        _check(all(value > 0 for value in self.pixel_std), "model.pixel_std", "must be > 0")


@dataclass(frozen=True)
class MethodConfig:
    """``name`` picks the method class from the registry in ``personsearch.methods.base``;
    ``params`` are its keyword arguments, validated by :func:`personsearch.methods.base.
    build_method` against the method's own ``Params`` dataclass (or its signature)."""

    name: str = "seqnet"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SolverConfig:
    """SGD with linear warm-up and step decay (docs/methods.md §1.6, §2.1).

    Warm-up: ``warmup_iters`` iterations, or ``warmup_epochs`` epochs (converted with the number
    of iterations per epoch); the lr factor goes linearly from ``warmup_factor`` to 1. The lr is
    multiplied by ``gamma`` for each of ``lr_steps`` (0-based epoch numbers) already reached.
    """

    lr: float = 0.003
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int | None = None
    warmup_epochs: float | None = None
    warmup_factor: float = 0.001
    lr_steps: tuple[int, ...] = (16,)
    gamma: float = 0.1
    epochs: int = 20
    clip_grad_norm: float | None = 10.0
    bf16: bool = False
    fp16: bool = False  # fp16 autocast + torch.amp.GradScaler (GPUs without bf16)
    channels_last: bool = False
    # CUDA: cuDNN deterministic algorithms, no TF32, torch deterministic mode. Off = fast
    # settings; CUDA atomics (index_add, scatter) then make bit-exact resume impossible.
    deterministic: bool = False
    # Several processes: "linear" multiplies lr by global batch / reference_batch_size and
    # divides a warm-up given in iterations by the same factor; "none" keeps them.
    lr_scaling: LrScaling = "linear"
    reference_batch_size: int | None = None  # global batch the lr was tuned for (None = data.batch_size)
    sync_bn: bool = False  # BatchNorm statistics over all processes (SyncBatchNorm)
    # At most this many batches per epoch (the first ones of the epoch's order); None = every
    # batch. For rehearsals at full size (benchmarks/rehearsal.py) and smoke runs.
    iters_per_epoch: int | None = None

    def __post_init__(self) -> None:
        _check(self.lr > 0, "solver.lr", "must be > 0")
        _check(self.epochs >= 1, "solver.epochs", "must be >= 1")
        _check(self.warmup_iters is None or self.warmup_epochs is None, "solver.warmup_iters",
               "give warmup_iters or warmup_epochs, not both")
        _check(self.warmup_iters is None or self.warmup_iters >= 0, "solver.warmup_iters",
               "must be >= 0")
        _check(self.warmup_epochs is None or self.warmup_epochs >= 0, "solver.warmup_epochs",
               "must be >= 0")
        _check(0 < self.warmup_factor <= 1, "solver.warmup_factor", "must be in (0, 1]")
        _check(list(self.lr_steps) == sorted(self.lr_steps), "solver.lr_steps",
               "must be increasing")
        _check(self.clip_grad_norm is None or self.clip_grad_norm > 0, "solver.clip_grad_norm",
               "must be > 0 or null")
        _check(not (self.bf16 and self.fp16), "solver.fp16", "give bf16 or fp16, not both")
        _check(self.reference_batch_size is None or self.reference_batch_size >= 1,
               "solver.reference_batch_size", "must be >= 1 or null")
        _check(self.iters_per_epoch is None or self.iters_per_epoch >= 1,
               "solver.iters_per_epoch", "must be >= 1 or null")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    out_dir: str = "out/train"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    checkpoint_every_iters: int = 0  # 0 = only at the end of each epoch
    keep_epoch_checkpoints: bool = True
    log_every: int = 20
    eval_every_epochs: int = 0  # 0 = never during training
    max_nonfinite: int = 5
    # DDP's search for parameters without gradient each step: off by default (every parameter
    # is used by the built-in methods); a method that leaves some unused gets a clear error
    # asking for true.
    find_unused_parameters: bool = False
    progress: bool = True
    diagnostics: bool = True  # log pseudo-label precision/recall against the true train ids

    def __post_init__(self) -> None:
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               "train.device", f"expected auto, cpu or cuda, got {self.device!r}")
        _check(self.checkpoint_every_iters >= 0, "train.checkpoint_every_iters", "must be >= 0")
        _check(self.log_every >= 1, "train.log_every", "must be >= 1")
        _check(self.eval_every_epochs >= 0, "train.eval_every_epochs", "must be >= 0")
        _check(self.max_nonfinite >= 1, "train.max_nonfinite", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation during / after training. ``format``/``root`` default to the data section."""

    format: DataFormat | None = None
    root: str | None = None
    det_thresh: float = 0.5
    gallery_size: int = 100
    min_size: int = 900
    max_size: int = 1500


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ------------------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return str(tp).replace("typing.", "")


def convert_value(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form (lists
    become tuples for tuple fields, ints become floats for float fields). ``key`` is the dotted
    name used in the error message."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_value(arg, value, key)
            except ConfigError as error:
                errors.append(error)
        allowed = " or ".join(_type_name(a) if a is not type(None) else "null" for a in args)
        raise ConfigError(f"{key}: expected {allowed}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [convert_value(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected a list of {len(args)} items, got {value!r}")
            items = [convert_value(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            inner = args[0] if args else Any
            items = [convert_value(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else list(items)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        value_tp = args[1] if args else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{key}: keys must be strings, got {k!r}")
            out[k] = convert_value(value_tp, v, f"{key}.{k}")
        return out
    if dataclasses.is_dataclass(tp):
        return dataclass_from_dict(tp, value, key)
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")  # a bug in a dataclass


def dataclass_from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from a mapping, checking keys and types. ``prefix`` is
    the dotted path of the mapping (for error messages)."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    field_names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(field_names))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(
            f"{name}: unknown key (known keys of {where}: {', '.join(field_names)})"
        )
    kwargs = {}
    for name in field_names:
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = convert_value(hints[name], data[name], key)
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists, not tuples): YAML- and checkpoint-safe."""
    return _plain(cfg)


# ------------------------------------------------------------------------------ loading


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"solver.lr=0.002"`` -> (["solver", "lr"], 0.002)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE (e.g. solver.lr=0.002)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {error}") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Return a copy of the nested mapping ``data`` with dotted overrides applied. Unknown keys
    are left for validation to report."""
    import copy

    result = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a section"
                )
            node = child
        node[path[-1]] = value
    return result


def config_from_dict(data: Mapping | None, overrides: Sequence[str] = ()) -> Config:
    data = dict(data or {})
    return dataclass_from_dict(Config, apply_overrides(data, overrides), "")


#: The shipped presets (package data; the top-level ``configs/`` of the repository links here).
PRESETS_DIR = Path(__file__).resolve().parent / "configs"


def preset_paths() -> dict[str, Path]:
    """Shipped presets by name (file stem), sorted."""
    return {path.stem: path for path in sorted(PRESETS_DIR.glob("*.yaml"))}


def preset_description(path: Path) -> str:
    """First sentence of a preset's header comment (the ``#`` lines at the top of the file)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(words)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def resolve_config_path(config: str | Path) -> Path:
    """``config`` as a file path if that file exists, else a shipped preset's name
    (``ssl_synthetic`` or ``ssl_synthetic.yaml``)."""
    path = Path(config)
    if path.is_file() or len(path.parts) > 1:
        return path  # a path: a missing file is reported when it is read
    presets = preset_paths()
    name = path.name.removesuffix(".yaml")
    if name in presets:
        return presets[name]
    raise ConfigError(
        f"{config}: no such config file and no preset of that name "
        f"(presets: {', '.join(presets)}; `personsearch config list` describes them)"
    )


def _read_mapping(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def merge_over_base(base: Mapping, delta: Mapping, key: str = "") -> dict:
    """``delta`` laid over ``base``: mappings merge key by key, every other value (lists
    included) replaces the base's. A ``method`` section that names another method than its
    base starts from empty ``params`` (parameters belong to their method)."""
    import copy

    if key == "method" and "name" in delta and delta["name"] != base.get("name", MethodConfig.name):
        base = {k: v for k, v in base.items() if k != "params"}
    merged = copy.deepcopy(dict(base))
    for name, value in delta.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = merge_over_base(merged[name], value, f"{key}.{name}" if key else name)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


def _read_with_bases(path: Path, chain: tuple[Path, ...]) -> tuple[dict, list[Path]]:
    data = _read_mapping(path)
    if "base" not in data:
        return data, []
    base_name = data.pop("base")
    if not isinstance(base_name, str) or not base_name:
        raise ConfigError(f"{path}: base: expected a config file name, got {base_name!r}")
    base_path = path.parent / base_name
    chain = (*chain, path.resolve())
    if base_path.resolve() in chain:
        files = " -> ".join(str(p) for p in (*chain, base_path.resolve()))
        raise ConfigError(f"{path}: base cycle: {files}")
    if not base_path.is_file():
        raise ConfigError(f"{path}: base {base_name}: no such file ({base_path})")
    base, bases = _read_with_bases(base_path, chain)
    return merge_over_base(base, data), [base_path, *bases]


def read_config_file(path: str | Path) -> dict:
    """The YAML mapping of a config file with its ``base:`` chain merged in (``base: other.yaml``
    is resolved relative to the file naming it; the result has no ``base`` key)."""
    return _read_with_bases(Path(path), ())[0]


def load_config(config: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config file (or a shipped preset by name), resolve its ``base:`` chain and
    apply dotted overrides. An error names the file and, if it has any, its bases."""
    path = resolve_config_path(config)
    data, bases = _read_with_bases(path, ())
    where = f"{path} (bases: {', '.join(str(b) for b in bases)})" if bases else str(path)
    try:
        cfg = config_from_dict(data, overrides)
        check_method_params(cfg)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return cfg


def check_method_params(cfg: Config) -> None:
    """ConfigError now, while the config file is known, for an unknown method name or a
    ``method.params`` key or value the method does not accept (``build_method`` checks the
    same later, too late to name the file)."""
    import personsearch.methods  # noqa: F401  (method modules may register themselves)
    from personsearch.methods.base import method_class, validate_params

    validate_params(method_class(cfg.method.name), method_kwargs(cfg))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


# ---------------------------------------------------------------- translation (ONE place)


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of ``personsearch.models.build_model`` (docs/architecture.md)."""
    return {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)}


def method_kwargs(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of ``personsearch.methods.build_method(cfg.method.name, **kwargs)``."""
    return dict(cfg.method.params)


def train_sizes(cfg: Config) -> list[tuple[int, int]]:
    """Training resize choices as (max_size, min_size) pairs."""
    if cfg.data.multi_scale:
        return [tuple(pair) for pair in cfg.data.multi_scale]
    return [(cfg.data.max_size, cfg.data.min_size)]
