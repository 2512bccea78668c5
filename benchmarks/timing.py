"""Repeated timing for the benchmark scripts: one warm-up call, then ``repeats`` timed calls,
each measured in wall seconds and in process CPU seconds (steadier on a shared machine); and
the CPU model every speed figure is recorded with."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable


def repeat_timings(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each of ``repeats`` calls of ``fn`` after one warm-up."""
    fn()  # warm-up
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return seconds, cpu_seconds


def cpu_model() -> str:
    """The CPU's model name (as lscpu shows it), or the machine type where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
