"""``personsearch train CONFIG [--set KEY=VALUE ...] [--resume] [--out DIR]``

Builds the training data, the model (``build_model(**model_kwargs(cfg))``), the method
(``build_method(cfg.method.name, **cfg.method.params)``) and the trainer, and trains. Writes
``<out>/config.yaml``, ``<out>/checkpoints/last.pt`` (+ ``epoch_NNN.pt``) and
``<out>/metrics.jsonl``. Multi-process: ``torchrun --nproc-per-node N -m personsearch.cli.main
train CONFIG`` (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from personsearch.atomic import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set solver.lr=0.002 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/checkpoints/last.pt")
    parser.add_argument("--out", default=None, help="output folder (overrides train.out_dir)")


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _config_differences(a, b, name + ".")
        elif a != b:
            keys.append(name)
    return keys


def build_evaluate(cfg, device):
    """The periodic-evaluation callable ``(model, epoch) -> metrics``; needs
    ``personsearch.evaluation.evaluate_model`` (written with the evaluation package)."""
    try:
        from personsearch.evaluation import evaluate_model
    except ImportError as error:
        from personsearch.errors import ConfigError

        raise ConfigError(
            "train.eval_every_epochs > 0 needs personsearch.evaluation.evaluate_model, which "
            f"cannot be imported ({error}); set train.eval_every_epochs=0"
        ) from None

    def evaluate(model, epoch: int) -> dict:
        return evaluate_model(
            model,
            fmt=cfg.eval.format or cfg.data.format,
            root=cfg.eval.root or cfg.data.root,
            gallery_size=cfg.eval.gallery_size,
            det_thresh=cfg.eval.det_thresh,
            min_size=cfg.eval.min_size,
            max_size=cfg.eval.max_size,
            device=device,
            progress=cfg.train.progress,
        )

    return evaluate


def configure_method(method, cfg, records) -> list:
    """Hand the method what it needs beyond its params, explicitly: the memory-extraction
    resize, and — for the supervised reference only — the training identities. Weakly
    supervised methods never receive identities; when ``train.diagnostics`` is on, a hook
    compares their pseudo labels with the true ids each epoch. Returns the extra hooks."""
    from personsearch.data import load_train_identities
    from personsearch.engine.hooks import PseudoLabelDiagnosticsHook
    from personsearch.methods.common import ExtractionSizes, concat_true_ids

    if hasattr(method, "extraction_sizes"):
        method.extraction_sizes = ExtractionSizes(cfg.eval.min_size, cfg.eval.max_size)
    if hasattr(method, "progress"):
        method.progress = cfg.train.progress
    if hasattr(method, "data_root") and cfg.data.masks:
        method.data_root = cfg.data.root  # person masks for the memory initialisation
    needs_ids = getattr(method, "supervised", False)
    wants_diagnostics = cfg.train.diagnostics and hasattr(method, "pseudo_label_diagnostics")
    if not (needs_ids or wants_diagnostics):
        return []
    slot_true_ids = concat_true_ids(load_train_identities(cfg.data.format, cfg.data.root))
    if needs_ids:
        method.set_identities(slot_true_ids)
        return []
    return [PseudoLabelDiagnosticsHook(slot_true_ids)]


def run(args: argparse.Namespace) -> int:
    from personsearch.config import (
        config_to_dict,
        dump_config,
        load_config,
        method_kwargs,
        model_kwargs,
        train_sizes,
    )
    from personsearch.errors import CheckpointError, ConfigError

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out_dir={json.dumps(str(args.out))}")
    cfg = load_config(args.config, overrides)
    out_dir = Path(cfg.train.out_dir)
    last = out_dir / "checkpoints" / "last.pt"
    if args.resume and not last.is_file():
        raise CheckpointError(f"{last}: nothing to resume (no checkpoint in {out_dir})")
    if not args.resume and last.is_file():
        raise ConfigError(
            f"{out_dir} already holds a training run ({last}); pass --resume to continue it "
            "or --out to start a new one"
        )
    if not cfg.data.root:
        raise ConfigError("data.root: the dataset folder is not set (--set data.root=PATH)")

    from personsearch.data import load_split
    from personsearch.data.loader import build_train_loader
    from personsearch.data.splits import slot_offsets
    from personsearch.engine.checkpoint import load_checkpoint
    from personsearch.engine.distributed import cleanup_distributed, init_distributed
    from personsearch.engine.trainer import Trainer, seed_everything
    import personsearch.methods  # noqa: F401  (method modules may register themselves)
    from personsearch.methods.base import build_method
    from personsearch.models import build_model

    dist = init_distributed(cfg.train.device)
    try:
        config_dict = config_to_dict(cfg)
        if args.resume and dist.is_main:
            saved = load_checkpoint(last).get("config", {})
            changed = _config_differences(saved, config_dict)
            if changed:
                print(f"personsearch train: note: config differs from the checkpoint's in: "
                      f"{', '.join(changed)}", file=sys.stderr)
        seed_everything(cfg.train.seed)
        records = load_split(cfg.data.format, cfg.data.root, "train")
        mask_loader = None
        if cfg.data.masks:
            from personsearch.data.masks import load_person_masks

            mask_loader = partial(load_person_masks, cfg.data.root)
        loader = build_train_loader(
            records,
            slot_offsets(records),
            sizes=train_sizes(cfg),
            flip=cfg.data.flip,
            batch_size=cfg.data.batch_size,
            seed=cfg.train.seed,
            num_workers=cfg.data.workers,
            rank=dist.rank,
            world_size=dist.world_size,
            mask_loader=mask_loader,
        )
        kwargs = model_kwargs(cfg)
        model = build_model(**kwargs)
        method = build_method(cfg.method.name, **method_kwargs(cfg))
        hooks = configure_method(method, cfg, records)
        evaluate = build_evaluate(cfg, dist.device) if cfg.train.eval_every_epochs > 0 else None
        trainer = Trainer(
            model, method, loader,
            solver=cfg.solver, train=cfg.train, train_records=records, device=dist.device,
            dist=dist, config=config_dict, model_kwargs=kwargs, evaluate=evaluate,
            hooks=hooks,
        )
        if dist.is_main:
            atomic_write_text(out_dir / "config.yaml", dump_config(cfg))
        result = trainer.train(resume=args.resume)
        if dist.is_main:
            print(json.dumps(result))
    finally:
        cleanup_distributed()
    return 0
