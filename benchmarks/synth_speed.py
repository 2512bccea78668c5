"""Speed of the synthetic scene generator: 1,000 PRW-like frames at 960x540 into a temp
folder. Prints JSON {"frames", "seconds", "frames_per_second", ...}.

    .venv/bin/python benchmarks/synth_speed.py [--frames 1000] [--workers N] [--fmt prw]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from personsearch.data.synth import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=540)
    parser.add_argument("--workers", type=int, default=None, help="default: os.cpu_count()")
    parser.add_argument("--fmt", default="prw", choices=("prw", "cuhk-sysu"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synth_speed_") as folder:
        start = time.perf_counter()
        counts = generate_dataset(os.path.join(folder, "data"), fmt=args.fmt, frames=args.frames,
                                  seed=args.seed, width=args.width, height=args.height,
                                  workers=args.workers)
        seconds = time.perf_counter() - start
    print(json.dumps({
        "frames": args.frames,
        "seconds": round(seconds, 2),
        "frames_per_second": round(args.frames / seconds, 2),
        "width": args.width, "height": args.height, "format": args.fmt,
        "workers": args.workers or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "boxes": counts["boxes"], "queries": counts["queries"],
    }))


if __name__ == "__main__":
    main()
