"""``personsearch import-checkpoint seqnet|cgps FILE.pth --out OUT.pt [--dataset prw|cuhk-sysu]``:
convert a released reference checkpoint (SeqNet's ``epoch_19.pth``, CGPS's mmdetection
checkpoint) into a personsearch checkpoint for ``eval``, ``index build``, ``search`` and
``serve``, carrying the reference's network and test settings (see
``personsearch.engine.reference_checkpoints``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from personsearch.engine.reference_checkpoints import REFERENCE_FORMATS

    parser.add_argument("format", choices=sorted(REFERENCE_FORMATS),
                        help="which reference wrote the file (seqnet: its epoch_*.pth; "
                             "cgps: its mmdetection checkpoint, the 'state_dict' of an epoch_*.pth)")
    parser.add_argument("file", help="the released checkpoint file")
    parser.add_argument("--out", required=True, help="personsearch checkpoint to write (.pt)")
    parser.add_argument("--dataset", choices=["prw", "cuhk-sysu"], default="prw",
                        help="dataset the model was trained on; sets the evaluation defaults "
                             "recorded in the checkpoint (PRW: full gallery; CUHK-SYSU: 100; "
                             "both references test at 900/1500)")


def run(args: argparse.Namespace) -> int:
    from personsearch.engine.checkpoint import fingerprint, save_checkpoint
    from personsearch.engine.reference_checkpoints import import_reference_checkpoint

    state = import_reference_checkpoint(args.format, args.file, args.dataset)
    save_checkpoint(args.out, state)
    print(f"wrote {args.out}: {args.format} model from {args.file} ({len(state['model'])} tensors, "
          f"fingerprint {fingerprint(state['model_kwargs'], state['model'])[:12]})")
    return 0
