"""``personsearch train CONFIG [--set KEY=VALUE ...] [--out DIR] [--resume | --resume-from
CHECKPOINT] [--allow-config-change]``

Builds the training data, the model (``build_model(**model_kwargs(cfg))``), the method
(``build_method(cfg.method.name, **cfg.method.params)``) and the trainer, and trains. Writes
``<out>/config.yaml``, ``<out>/checkpoints/last.pt`` (+ ``epoch_NNN.pt``),
``<out>/metrics.jsonl``, ``<out>/dataset.json`` (what identifies the training split) and
``<out>/run_log.jsonl`` (one line per start / resume, with any accepted config change).

Fault tolerance: ``--auto-resume`` continues the run in ``--out`` when it holds a checkpoint
(else starts it), for schedulers that rerun the same command. Under ``torchrun --max-restarts N``
a restarted worker group does so by itself: the run log records the torchrun job
(``--rdzv-id``) that started the run, and a worker of the same job finding ``last.pt`` resumes
from it; so a lost process costs the iterations since the last checkpoint
(``train.checkpoint_every_iters``).

Resume continues with the run's saved config (the checkpoint's), never the CONFIG file's: a
``--set`` value that differs from it is refused, listing the keys, unless
``--allow-config-change`` (then recorded in the run log); a different training split (another
``data.root`` / ``data.format``, or a dataset changed on disk) is always refused, because the
memory banks have one row per training box of the run's dataset. Multi-process: ``torchrun --nproc-per-node N -m personsearch.cli.main
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
                        help="continue the run in --out from its checkpoints/last.pt, with the "
                             "run's saved config")
    parser.add_argument("--resume-from", metavar="CHECKPOINT", default=None,
                        help="continue the run in --out from this checkpoint instead of last.pt "
                             "(e.g. an epoch_NNN.pt when last.pt is damaged); implies --resume")
    parser.add_argument("--auto-resume", action="store_true",
                        help="continue the run in --out when it holds a checkpoint, start it "
                             "otherwise (for job schedulers that rerun the same command); a "
                             "group restarted by torchrun --max-restarts does this by itself")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: accept --set values that differ from the run's "
                             "saved config (recorded in <out>/run_log.jsonl)")
    parser.add_argument("--out", default=None, help="output folder (overrides train.out_dir)")


_MISSING = object()
DATASET_KEYS = ("data.format", "data.root")
RUN_LOG = "run_log.jsonl"
DATASET_FILE = "dataset.json"


def config_differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """Dotted key -> (old value, new value) for every leaf that differs (missing = None)."""
    changes: dict[str, tuple] = {}
    for key in sorted(set(old) | set(new), key=str):
        name = f"{prefix}{key}"
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            changes.update(config_differences(a, b, name + "."))
        elif a != b:
            changes[name] = (None if a is _MISSING else a, None if b is _MISSING else b)
    return changes


def _format_changes(changes: dict[str, tuple]) -> str:
    return ", ".join(f"{key} ({json.dumps(a)} -> {json.dumps(b)})" for key, (a, b) in changes.items())


def dataset_signature(fmt: str, root: str, records) -> dict:
    """What identifies a training split: counts and a sha256 of every image name and box, in
    order (the memory-bank slots follow it). ``root`` is recorded but not hashed, so a dataset
    moved elsewhere keeps its signature."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    boxes = 0
    for record in records:
        record_boxes = np.ascontiguousarray(np.asarray(record.boxes, np.float32).reshape(-1, 4))
        boxes += len(record_boxes)
        digest.update(record.image_name.encode("utf-8") + b"\0")
        digest.update(record_boxes.tobytes())
    return {"format": fmt, "root": str(root), "images": len(records), "boxes": int(boxes),
            "sha256": digest.hexdigest()}


def elastic_restart_count() -> int:
    """How many times this torchrun agent restarted its workers after a failure
    (``TORCHELASTIC_RESTART_COUNT``; 0 outside torchrun). A group restarted because *another*
    node failed keeps 0 here, so this alone does not tell a restart: see :func:`elastic_job`."""
    import os

    try:
        return max(0, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    except ValueError:
        return 0


def elastic_job() -> str | None:
    """The torchrun job this worker belongs to (``TORCHELASTIC_RUN_ID`` = ``--rdzv-id``; a
    random id with ``--standalone``), constant across restarts of the worker group; None
    outside torchrun or for torchrun's default id "none"."""
    import os

    value = os.environ.get("TORCHELASTIC_RUN_ID", "").strip()
    return value if value and value != "none" else None


def elastic_store_warning() -> str | None:
    """The warning for a multi-node torchrun with restarts on torch's shared rendezvous store,
    or None. That store keys the workers' addresses by each agent's own restart count, and an
    agent restarted because *another* node failed does not count the restart: after such a
    restart the nodes disagree on the key and the new group connects to the dead workers'
    addresses and fails. ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` gives each round a fresh store
    (tests/engine/test_elastic.py restarts a killed worker that way)."""
    import os

    def number(name: str) -> int:
        try:
            return int(os.environ.get(name, "0"))
        except ValueError:
            return 0

    if (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            and number("TORCHELASTIC_MAX_RESTARTS") > 0 and number("GROUP_WORLD_SIZE") > 1):
        return ("multi-node torchrun with --max-restarts on torch's shared rendezvous store: a "
                "restart after one node fails can connect to the dead workers and fail; launch "
                "with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in the environment of every node")
    return None


def started_by_job(out_dir: Path, job: str | None) -> bool:
    """Whether the run in ``out_dir`` was started or resumed by torchrun job ``job`` (its run
    log records the job): then a new start of a worker is the job's group restarting."""
    if job is None:
        return False
    try:
        lines = (out_dir / RUN_LOG).read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    for line in lines:
        try:
            if json.loads(line).get("elastic_job") == job:
                return True
        except (ValueError, AttributeError):
            continue
    return False


def append_run_log(out_dir: Path, event: dict) -> None:
    """One JSON line per start / resume in ``<out>/run_log.jsonl`` (appended, flushed)."""
    from datetime import datetime, timezone

    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **event}
    with open(out_dir / RUN_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def _resume_command(args, checkpoint: Path, out_dir: Path) -> str:
    import shlex

    parts = ["personsearch", "train", args.config, "--out", str(out_dir), "--resume-from",
             str(checkpoint)]
    for override in args.overrides:
        parts += ["--set", override]
    if args.allow_config_change:
        parts.append("--allow-config-change")
    return " ".join(shlex.quote(p) for p in parts)


def resume_config(args, file_cfg, checkpoint: Path):
    """The config a resumed run continues with: the checkpoint's saved config plus the
    ``--set`` overrides, which may only change it with ``--allow-config-change``; a dataset
    change is refused. Returns (cfg, accepted changes {key: (old, new)})."""
    from personsearch.config import check_method_params, config_from_dict, config_to_dict
    from personsearch.engine.checkpoint import CorruptCheckpointError, load_checkpoint
    from personsearch.errors import CheckpointError, ConfigError
    from personsearch.methods.base import upgrade_saved_params

    out_dir = Path(file_cfg.train.out_dir)
    try:
        state = load_checkpoint(checkpoint)
    except CorruptCheckpointError as error:
        if error.intact is None:
            raise
        raise CheckpointError(f"{error}; to resume from it: "
                              f"{_resume_command(args, error.intact, out_dir)}") from None
    saved = state.get("config")
    if not isinstance(saved, dict) or not saved:
        raise CheckpointError(f"{checkpoint}: holds no saved config, so the run cannot be "
                              f"resumed with the config it was trained with")
    method_section = saved.get("method")
    if isinstance(method_section, dict) and isinstance(method_section.get("params"), dict):
        # a run saved before a method parameter was renamed resumes under the new name
        saved = {**saved, "method": {**method_section, "params": upgrade_saved_params(
            str(method_section.get("name")), method_section["params"])}}
    try:
        saved_cfg = config_from_dict(saved)
    except ConfigError as error:
        raise CheckpointError(f"{checkpoint}: its saved config no longer loads ({error})") from None
    saved = config_to_dict(saved_cfg)
    # the run folder is where it is now, whatever it was called when the run started
    location = [f"train.out_dir={json.dumps(str(out_dir))}"]
    try:
        cfg = config_from_dict(saved, list(args.overrides) + location)
        check_method_params(cfg)
    except ConfigError as error:
        raise ConfigError(f"--set on the saved config of {checkpoint}: {error}") from None
    reference = config_to_dict(config_from_dict(saved, location))
    changes = config_differences(reference, config_to_dict(cfg))
    file_changes = {k: v for k, v in config_differences(
        reference, config_to_dict(file_cfg)).items() if k not in changes}
    if file_changes:
        print(f"personsearch train: note: {args.config} differs from the run's saved config in "
              f"{', '.join(file_changes)}; the saved config is used (see {out_dir / 'config.yaml'})",
              file=sys.stderr)
    dataset_changes = {k: v for k, v in changes.items() if k in DATASET_KEYS}
    if dataset_changes and not args.allow_config_change:
        raise ConfigError(
            f"{out_dir}: the run was trained on the {saved['data']['format']} dataset at "
            f"{saved['data']['root']}; resuming it on another dataset "
            f"({_format_changes(dataset_changes)}) is refused: its memory banks have one row per "
            f"training box of that dataset. Start a new run with --out (or, if the same dataset "
            f"has only moved, add --allow-config-change: its content is checked)")
    if changes and not args.allow_config_change:
        raise ConfigError(
            f"{out_dir}: --set differs from the run's saved config in {len(changes)} key(s): "
            f"{_format_changes(changes)}. A resumed run keeps its config; pass "
            f"--allow-config-change to continue with these values (recorded in "
            f"{out_dir / RUN_LOG}), or start a new run with --out")
    return cfg, changes


def check_training_split(fmt: str, root: str, records) -> None:
    """DatasetError naming the dataset when its training split has no image or no person box:
    every method keeps one memory row per training box, so there is nothing to train on.
    (Images without persons among others are fine: they teach the detector background.)"""
    from personsearch.errors import DatasetError

    if not records:
        raise DatasetError(root, f"the {fmt} training split has no image")
    if sum(int(r.num_boxes) for r in records) == 0:
        raise DatasetError(root, f"the {fmt} training split has {len(records)} images but no "
                                 f"person box: there is nothing to learn persons from")


def check_dataset_identity(out_dir: Path, signature: dict) -> None:
    """ConfigError when the training split differs from the one the run started with
    (``<out>/dataset.json``; a run from before that file existed is not checked)."""
    from personsearch.errors import ConfigError

    path = out_dir / DATASET_FILE
    if not path.is_file():
        return
    try:
        started = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: unreadable ({error}); it identifies the run's dataset") from None
    keys = ("format", "images", "boxes", "sha256")
    if any(started.get(k) != signature[k] for k in keys):
        raise ConfigError(
            f"{out_dir}: a different dataset: the run was trained on the {started.get('format')} "
            f"training split at {started.get('root')} ({started.get('images')} images, "
            f"{started.get('boxes')} boxes), but {signature['root']} holds "
            f"{signature['images']} images, {signature['boxes']} boxes"
            + (" (same counts, different names or boxes)"
               if (started.get("images"), started.get("boxes")) == (signature["images"], signature["boxes"])
               else "")
            + "; a run resumes only on the dataset it was trained on (start a new run with --out)")


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


def method_context(method, cfg, records, device, dist):
    """What the method receives besides its params, explicitly (``MethodContext``): the
    training records, device and process group, the memory-extraction resize, the person-mask
    folder when the run uses masks, and — for a supervised method (the SeqNet reference) only —
    the training identities. Weakly supervised methods never receive identities; when
    ``train.diagnostics`` is on, a hook compares their pseudo labels with the true ids each
    epoch. Returns (context, extra hooks)."""
    from personsearch.data import load_train_identities
    from personsearch.engine.hooks import PseudoLabelDiagnosticsHook
    from personsearch.methods.common import concat_true_ids
    from personsearch.methods.context import ExtractionSizes, MethodContext

    wants_diagnostics = cfg.train.diagnostics and hasattr(method, "pseudo_label_diagnostics")
    slot_true_ids = None
    if method.supervised or wants_diagnostics:
        slot_true_ids = concat_true_ids(load_train_identities(cfg.data.format, cfg.data.root))
    context = MethodContext(
        train_records=records, device=device, dist=dist,
        extraction_sizes=ExtractionSizes(cfg.eval.min_size, cfg.eval.max_size),
        masks_root=cfg.data.root if cfg.data.masks else None,
        slot_true_ids=slot_true_ids if method.supervised else None,
        progress=cfg.train.progress)
    hooks = [] if method.supervised or slot_true_ids is None else [
        PseudoLabelDiagnosticsHook(slot_true_ids)]
    return context, hooks


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
    resume_from = Path(args.resume_from) if args.resume_from else (last if args.resume else None)
    job, restarts = elastic_job(), elastic_restart_count()
    if resume_from is None and last.is_file() and (
            args.auto_resume or restarts > 0 or started_by_job(out_dir, job)):
        resume_from = last  # the same run, started again: continue from its last checkpoint
    if resume_from is not None and not resume_from.is_file():
        raise CheckpointError(f"{resume_from}: nothing to resume (no checkpoint in {out_dir})"
                              if resume_from == last else f"{resume_from}: checkpoint file not found")
    if args.allow_config_change and resume_from is None:
        raise ConfigError("--allow-config-change only applies with --resume / --resume-from")
    if resume_from is None and last.is_file():
        raise ConfigError(
            f"{out_dir} already holds a training run ({last}); pass --resume to continue it "
            "or --out to start a new one"
        )
    accepted_changes: dict = {}
    if resume_from is not None:
        cfg, accepted_changes = resume_config(args, cfg, resume_from)
    if not cfg.data.root:
        raise ConfigError("data.root: the dataset folder is not set (--set data.root=PATH)")

    from personsearch.data import load_split
    from personsearch.data.loader import build_train_loader
    from personsearch.data.splits import slot_offsets
    from personsearch.comm import cleanup_distributed, init_distributed
    from personsearch.engine.trainer import Trainer, seed_everything
    import personsearch.methods  # noqa: F401  (method modules may register themselves)
    from personsearch.methods.base import build_method
    from personsearch.models import build_model

    dist = init_distributed(cfg.train.device)
    try:
        config_dict = config_to_dict(cfg)
        seed_everything(cfg.train.seed)
        records = load_split(cfg.data.format, cfg.data.root, "train")
        check_training_split(cfg.data.format, cfg.data.root, records)
        signature = dataset_signature(cfg.data.format, cfg.data.root, records)
        if resume_from is not None:
            check_dataset_identity(out_dir, signature)
            if any(k in DATASET_KEYS for k in accepted_changes) and not (out_dir / DATASET_FILE).is_file():
                raise ConfigError(f"{out_dir}: the run has no {DATASET_FILE} (it predates it), "
                                  f"so a moved dataset cannot be checked; a run resumes on the "
                                  f"dataset path it was trained with")
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
        context, hooks = method_context(method, cfg, records, dist.device, dist)
        evaluate = build_evaluate(cfg, dist.device) if cfg.train.eval_every_epochs > 0 else None
        trainer = Trainer(
            model, method, loader, solver=cfg.solver, train=cfg.train, context=context,
            config=config_dict, model_kwargs=kwargs, evaluate=evaluate, hooks=hooks,
        )
        if dist.is_main:
            warning = elastic_store_warning()
            if warning:
                print(f"personsearch train: warning: {warning}", file=sys.stderr)
            atomic_write_text(out_dir / "config.yaml", dump_config(cfg))
            atomic_write_text(out_dir / DATASET_FILE, json.dumps(signature, indent=1))
            if resume_from is None:
                append_run_log(out_dir, {"event": "start", "elastic_job": job,
                                         "config_file": str(args.config),
                                         "overrides": list(args.overrides)})
            else:
                append_run_log(out_dir, {"event": "resume", "checkpoint": str(resume_from),
                                         "elastic_job": job, "elastic_restart": restarts,
                                         "overrides": list(args.overrides),
                                         "config_changes": {k: {"from": a, "to": b} for k, (a, b)
                                                            in accepted_changes.items()}})
                if accepted_changes:
                    print(f"personsearch train: continuing with config changes "
                          f"{_format_changes(accepted_changes)} (recorded in {out_dir / RUN_LOG})",
                          file=sys.stderr)
        result = trainer.train(resume=resume_from if resume_from is not None else False)
        if dist.is_main:
            print(json.dumps(result))
    finally:
        cleanup_distributed()
    return 0
