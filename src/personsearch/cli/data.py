"""``personsearch data``: check a dataset on disk, or generate a synthetic one.

    personsearch data check ROOT --format prw|cuhk-sysu|coco [--masks]
        prints the counts per split and every problem; exit 0 when clean, 1 otherwise.
        --masks: also the training images without a valid person mask (SSL presets).
    personsearch data synth OUT --format prw|cuhk-sysu --frames N --seed S
                            [--width W --height H] [--difficulty easy|normal|hard]
    personsearch data synth OUT --like prw-full|cuhk-sysu-full [--frames N] [--image-scale S]
                            [--workers N] [--gallery-sizes 50,100] [--resume]
        the real benchmark's counts and image sizes (docs/synthetic_data.md); --frames scales
        it down keeping the proportions, any explicit flag wins over the preset.
    personsearch data synth OUT --video [--cameras 2] [--identities 4] [--seconds 20] [--fps 10]
                            [--width 640 --height 360] [--seed S]
        synthetic videos (persons walking across two cameras), a photo per person and a
        ground-truth sidecar (data/synth/video.py) for search over video files.
    personsearch data masks ROOT --format prw|cuhk-sysu|coco [--method grabcut|box|schp]
                            [--weights FILE] [--split train] [--workers N] [--device auto]
                            [--overwrite]
        writes <ROOT>/masks/<image stem>.png person label maps (SSL background filtering) for
        every image of the split that has no valid one yet (docs/masks.md).
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
    check.add_argument("--masks", action="store_true",
                       help="also check the person masks of the training images (SSL presets)")
    synth = actions.add_parser("synth", help="generate a synthetic dataset in a real format")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--format", dest="fmt", default=None, choices=("prw", "cuhk-sysu"),
                       help="required unless --like gives it")
    synth.add_argument("--like", default=None, choices=("prw-full", "cuhk-sysu-full"),
                       help="the real benchmark's sizes, splits, identities and image sizes")
    synth.add_argument("--frames", type=int, default=None,
                       help="number of scene images (required without --like; with --like it "
                            "scales the preset, identities in proportion)")
    synth.add_argument("--image-scale", type=float, default=1.0,
                       help="--like only: multiply every image size (e.g. 0.25 for a quick run)")
    synth.add_argument("--workers", type=int, default=None,
                       help="rendering processes (default: every CPU)")
    synth.add_argument("--gallery-sizes", default=None, metavar="50,100,...",
                       help="cuhk-sysu: only these TestG{N}.mat files (must include 50; default "
                            "every size the pool can fill)")
    synth.add_argument("--resume", action="store_true",
                       help="continue an interrupted generation in OUT (same arguments): "
                            "frames already written are kept")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--width", type=int, default=None,
                       help="image width (px); with --like cuhk-sysu-full a fixed size")
    synth.add_argument("--height", type=int, default=None, help="image height (px)")
    synth.add_argument("--difficulty", choices=("easy", "normal", "hard"), default="normal")
    synth.add_argument("--video", action="store_true",
                       help="write synthetic videos (OUT/videos), one photo per person (OUT/photos) and "
                            "OUT/ground_truth.json instead of a dataset")
    synth.add_argument("--cameras", type=int, default=2, help="--video: cameras, one video each (default 2)")
    synth.add_argument("--identities", type=int, default=4,
                       help="--video: persons walking through every camera (default 4)")
    synth.add_argument("--seconds", type=float, default=20.0, help="--video: length of each video (default 20)")
    synth.add_argument("--fps", type=int, default=10, help="--video: frames a second (default 10)")
    masks = actions.add_parser("masks", help="write person masks for SSL's background filtering")
    masks.add_argument("root", help="dataset root folder (masks go to ROOT/masks/)")
    masks.add_argument("--format", dest="fmt", required=True,
                       choices=("prw", "cuhk-sysu", "coco"))
    masks.add_argument("--method", choices=("grabcut", "box", "schp"), default="grabcut",
                       help="grabcut (default, offline), box (whole box = no filtering), schp "
                            "(human parser, needs --weights)")
    masks.add_argument("--weights", default=None,
                       help="SCHP checkpoint (LIP, ATR or Pascal-Person-Part) for --method schp")
    masks.add_argument("--split", choices=("train", "gallery", "query"), default="train")
    masks.add_argument("--workers", type=int, default=1,
                       help="processes for grabcut / box (schp runs in one process)")
    masks.add_argument("--device", default="auto", help="schp: auto, cpu, cuda, cuda:1 ...")
    masks.add_argument("--overwrite", action="store_true",
                       help="recompute every mask (valid files are otherwise kept, whatever "
                            "method made them)")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "check":
        from personsearch.data.check import check_dataset

        report = check_dataset(args.fmt, args.root, masks=args.masks)
        print(report.format())
        return 0 if report.ok else 1
    if args.data_command == "masks":
        from personsearch.data.masks_generate import generate_masks

        summary = generate_masks(args.fmt, args.root, method=args.method, split=args.split,
                                 workers=args.workers, weights=args.weights, device=args.device,
                                 overwrite=args.overwrite)
        print(summary.format())
        return 0
    return _synth(args)


def _synth_video(args: argparse.Namespace) -> int:
    from personsearch.data.synth.video import generate_videos

    counts = generate_videos(args.out, seed=args.seed, cameras=args.cameras, identities=args.identities,
                             seconds=args.seconds, fps=args.fps, width=args.width or 640,
                             height=args.height or 360, progress=True)
    print(f"wrote synthetic videos to {args.out}/videos, photos to {args.out}/photos, "
          f"ground truth to {args.out}/ground_truth.json")
    for key, value in counts.items():
        print(f"  {key}: {value}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from personsearch.data.synth import generate_dataset

    if args.video:
        return _synth_video(args)

    if args.frames is not None and args.frames <= 0:
        raise SystemExit("personsearch data synth: --frames must be positive")
    if args.like is None:
        if args.fmt is None or args.frames is None:
            raise SystemExit("personsearch data synth: give --format and --frames, or --like")
        if args.image_scale != 1.0:
            raise SystemExit("personsearch data synth: --image-scale needs --like")
        kwargs = {"fmt": args.fmt, "frames": args.frames}
    else:
        from personsearch.data.synth.like import like_arguments

        kwargs = like_arguments(args.like, frames=args.frames, image_scale=args.image_scale)
        if args.fmt is not None and args.fmt != kwargs["fmt"]:
            raise SystemExit(f"personsearch data synth: --like {args.like} writes the "
                             f"{kwargs['fmt']} format, not {args.fmt}")
        if args.width is not None or args.height is not None:
            kwargs.pop("image_sizes", None)  # an explicit size: every image that size
    kwargs.update(seed=args.seed, difficulty=args.difficulty, progress=True,
                  workers=args.workers, resume=args.resume)
    if args.gallery_sizes is not None:
        if kwargs["fmt"] != "cuhk-sysu":
            raise SystemExit("personsearch data synth: --gallery-sizes is for cuhk-sysu")
        try:
            kwargs["cuhk_gallery_sizes"] = tuple(int(v) for v in args.gallery_sizes.split(","))
        except ValueError:
            raise SystemExit(f"personsearch data synth: --gallery-sizes: expected numbers "
                             f"separated by commas, got {args.gallery_sizes!r}") from None
    if args.width is not None:
        kwargs["width"] = args.width
    if args.height is not None:
        kwargs["height"] = args.height
    counts = generate_dataset(args.out, **kwargs)
    print(f"wrote a synthetic {kwargs['fmt']} dataset to {args.out}")
    for key, value in counts.items():
        print(f"  {key}: {value}")
    return 0
