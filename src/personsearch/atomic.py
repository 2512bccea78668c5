"""Atomic file writes: the one place that writes a file so that a crash never leaves it half
written.

The data goes into a temp file ``.<name>.<random>.tmp`` in the destination's folder (same file
system, so the rename is atomic). On success it is flushed, fsynced when asked, and moved onto
the destination with ``os.replace``; readers see the old file or the new one, never a mix. On
any exception (KeyboardInterrupt included) the temp file is removed and the exception re-raised:
the previous file, if any, is left as it was.

The file gets the permissions a plain ``open(path, "w")`` would give it (``0o666`` less the
umask), not the ``0o600`` of ``tempfile.mkstemp``.

    with atomic_open(path) as handle:          # binary by default
        torch.save(state, handle)
    with atomic_open(path, "w") as handle:     # text, UTF-8 unless ``encoding`` says otherwise
        json.dump(data, handle)
    atomic_write_bytes(path, data)
    atomic_write_text(path, text)
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

_MODES = ("wb", "w", "wt")
_ATTEMPTS = 100


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create and open a new temp file next to ``path``: (file descriptor, temp path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_ATTEMPTS):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temp file name for {path.name} after "
                          f"{_ATTEMPTS} attempts")


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, fsync: bool = True,
                encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file next to ``path`` for writing; on a clean exit of the ``with`` block it
    replaces ``path``, on an exception it is removed (``path`` untouched) and the exception
    re-raised. The parent folder is created.

    Args:
        mode: "wb" (default) for bytes, "w" or "wt" for text.
        fsync: fsync the data before the rename (survives a power loss, not just a crash).
        encoding: text mode only; UTF-8 when None.
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_open: mode must be one of {_MODES}, got {mode!r}")
    binary = "b" in mode
    if binary and encoding is not None:
        raise ValueError("atomic_open: encoding is for text mode only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = _create_temp(path)
    try:
        text_options = {} if binary else {"encoding": encoding or "utf-8"}
        handle = os.fdopen(descriptor, mode, **text_options)
    except BaseException:
        os.close(descriptor)
        temp.unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", fsync=fsync) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8 (see :func:`atomic_open`)."""
    with atomic_open(path, "w", fsync=fsync) as handle:
        handle.write(text)
