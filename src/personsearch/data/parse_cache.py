"""Parsed annotation files kept between reads: once per process in memory, and on disk between
processes.

CUHK-SYSU's MAT files take seconds each to parse with scipy (TestG100.mat holds 290,000 struct
entries) and PRW keeps one MAT file per frame, so a process that reads a split (``eval``,
``evaluate-results``, ``train``) would spend most of its time parsing. The readers therefore
hand their parse to :func:`cached_arrays`, which returns the arrays it produced the last time
the same files were parsed.

Key: what was parsed (``kind``, e.g. ``"cuhk-protocol:TestG100"``), :data:`CACHE_VERSION`, and
for every source file its absolute path, inode, size and modification and change times (ns).
Editing, replacing or touching a file gives a new key. (The one case it cannot see: a file
rewritten in place with the same size within the file system's timestamp granularity, a few
milliseconds, of the parse that was cached.)

Only the strict readers (``load_split``) use the cache: ``data check`` always parses, since it
must report every problem, including warnings the strict readers drop. A parse that raises is
never stored.

On disk: ``<cache dir>/annotations/<sha256 of the key>.npz`` with plain numpy arrays (no pickle),
written atomically. The cache dir is ``$PERSONSEARCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/personsearch``, else ``~/.cache/personsearch``; ``PERSONSEARCH_CACHE_DIR=off``
keeps the cache in memory only. A cache that cannot be written (read-only home) is reported once
as a warning and the process goes on with its in-memory copy; an unreadable entry is parsed
again and replaced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from personsearch.atomic import atomic_open

CACHE_VERSION = 1
MEMORY_ENTRIES = 16
_MEMORY: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
_WARNED: set[str] = set()
_LOG = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


def cache_dir() -> Path | None:
    """The on-disk cache folder, or None when ``PERSONSEARCH_CACHE_DIR=off``."""
    configured = os.environ.get("PERSONSEARCH_CACHE_DIR")
    if configured is not None:
        return None if configured.strip().lower() in ("off", "") else Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "personsearch"


def cache_key(sources: Sequence[Path], kind: str) -> str | None:
    """sha256 hex of kind, version and each source's absolute path, inode, size, mtime and ctime
    (ns); None when a source cannot be stat'ed (the parse then runs uncached and reports it)."""
    digest = hashlib.sha256(f"{kind}\0{CACHE_VERSION}".encode())
    for source in sources:
        try:
            stat = os.stat(source)
        except OSError:
            return None
        digest.update(f"\0{os.path.abspath(source)}\0{stat.st_ino}\0{stat.st_size}"
                      f"\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}"
                      .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _remember(key: str, arrays: Arrays) -> Arrays:
    _MEMORY[key] = arrays
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return arrays


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        _LOG.warning(message)


def _read_disk(path: Path) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        _warn_once(f"annotation cache entry {path} is unreadable ({type(error).__name__}); "
                   f"parsing again")
        return None


def _write_disk(path: Path, arrays: Arrays) -> None:
    try:
        with atomic_open(path, fsync=False) as handle:
            np.savez(handle, **arrays)
    except OSError as error:
        _warn_once(f"cannot write the annotation cache in {path.parent} ({error}); set "
                   f"PERSONSEARCH_CACHE_DIR to a writable folder, or to 'off'")


def cached_arrays(sources: Sequence[Path], kind: str, parse: Callable[[], Arrays]) -> Arrays:
    """The arrays ``parse()`` returns for ``sources``, from memory or disk when these files were
    parsed before (same paths, sizes and modification times). ``parse`` must return plain
    (non-object) numpy arrays; its exceptions propagate and nothing is stored then."""
    key = cache_key(sources, kind)
    if key is None:
        return parse()
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    folder = cache_dir()
    disk_path = None if folder is None else folder / "annotations" / f"{key}.npz"
    if disk_path is not None:
        arrays = _read_disk(disk_path)
        if arrays is not None:
            return _remember(key, arrays)
    arrays = parse()
    for name, array in arrays.items():
        if array.dtype == object:
            raise TypeError(f"cached_arrays({kind!r}): array {name!r} has dtype object")
    if disk_path is not None:
        _write_disk(disk_path, arrays)
    return _remember(key, arrays)


def clear_memory() -> None:
    """Forget the in-memory entries (tests)."""
    _MEMORY.clear()
