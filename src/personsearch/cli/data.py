"""``personsearch data``: check a dataset on disk, or generate a synthetic one.

    personsearch data check ROOT --format prw|cuhk-sysu|coco
        prints the counts per split and every problem; exit 0 when clean, 1 otherwise.
    personsearch data synth OUT --format prw|cuhk-sysu --frames N --seed S
                            [--width W --height H] [--difficulty easy|normal|hard]
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True
    check = actions.add_parser("check", help="read every split and list every problem")
    check.add_argument("root", help="dataset root folder")
    check.add_argument("--format", dest="fmt", required=True,
                       choices=("prw", "cuhk-sysu", "coco"))
    synth = actions.add_parser("synth", help="generate a synthetic dataset in a real format")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--format", dest="fmt", required=True, choices=("prw", "cuhk-sysu"))
    synth.add_argument("--frames", type=int, required=True, help="number of scene images")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--width", type=int, default=None, help="image width (px)")
    synth.add_argument("--height", type=int, default=None, help="image height (px)")
    synth.add_argument("--difficulty", choices=("easy", "normal", "hard"), default="normal")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        from personsearch.data.check import check_dataset

        report = check_dataset(args.fmt, args.root)
        print(report.format())
        return 0 if report.ok else 1
    from personsearch.data.synth import generate_dataset

    if args.frames <= 0:
        raise SystemExit("personsearch data synth: --frames must be positive")
    kwargs = {"fmt": args.fmt, "frames": args.frames, "seed": args.seed,
              "difficulty": args.difficulty, "progress": True}
    if args.width is not None:
        kwargs["width"] = args.width
    if args.height is not None:
        kwargs["height"] = args.height
    counts = generate_dataset(args.out, **kwargs)
    print(f"wrote a synthetic {args.fmt} dataset to {args.out}")
    for key, value in counts.items():
        print(f"  {key}: {value}")
    return 0
