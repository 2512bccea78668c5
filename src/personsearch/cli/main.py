"""``personsearch`` command line. Sub-commands live in their own modules and are imported
lazily, so ``personsearch data check`` does not pay for importing torch."""

from __future__ import annotations

import argparse
import importlib
import sys

from personsearch.errors import PersonSearchError

# sub-command -> (module under personsearch.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "generate (synth) or check a dataset"),
    "evaluate-results": ("evaluate_results", "evaluate a results .npz against a dataset"),
    "train": ("train", "train a model from a config"),
    "config": ("config", "list the shipped presets or print a config fully resolved"),
    "eval": ("eval", "evaluate a checkpoint on a dataset"),
    "ablate": ("ablate", "train several ablation rows and tabulate them"),
    "index": ("index", "build or inspect a persistent gallery index"),
    "search": ("search", "search an index with a query person"),
    "serve": ("serve", "serve the search web page"),
    "quantize": ("quantize", "write an INT8 checkpoint (ONNX Runtime, calibrated on training images)"),
    "import-checkpoint": ("import_checkpoint", "convert a released reference checkpoint (SeqNet)"),
    "demo": ("demo", "the main job end to end: synthetic data, SSL training, evaluation, results picture"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personsearch", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        if command is not None and name != command:
            subparsers.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(f"personsearch.cli.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is None and argv and not argv[0].startswith("-"):
        build_parser(None).parse_args(argv)  # prints the usage error
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        code = args._run(args)
    except PersonSearchError as error:
        print(f"personsearch {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
