"""personsearch.atomic: the temp file replaces the destination on success, is removed on an
exception (old content intact), parent folders are created, text mode writes UTF-8."""

from __future__ import annotations

import os
import sys

import pytest

from personsearch.atomic import atomic_open, atomic_write_bytes, atomic_write_text


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_binary_write_replaces_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")
    with atomic_open(path) as handle:
        assert "b" in handle.mode
        handle.write(b"new \x00\xff")
        # Until the block ends, readers still see the old file; the data sits in the temp file.
        assert path.read_bytes() == b"old"
        temps = _leftovers(tmp_path)
        assert len(temps) == 1
        assert temps[0].startswith(".state.bin.") and temps[0].endswith(".tmp")
    assert path.read_bytes() == b"new \x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


@pytest.mark.parametrize("fsync", [True, False])
def test_write_bytes_with_and_without_fsync(tmp_path, fsync):
    path = tmp_path / "data.bin"
    atomic_write_bytes(path, b"\x01\x02\x03", fsync=fsync)
    assert path.read_bytes() == b"\x01\x02\x03"
    assert _leftovers(tmp_path) == []


def test_exception_inside_block_keeps_old_content_and_removes_temp(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("old line\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_open(path, "w") as handle:
            handle.write("half a new ")
            raise RuntimeError("disk on fire")
    assert path.read_text(encoding="utf-8") == "old line\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_keyboard_interrupt_also_cleans_up_and_new_file_is_not_created(tmp_path):
    path = tmp_path / "never.pt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as handle:
            handle.write(b"partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_parent_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "out.json"
    atomic_write_text(path, "{}")
    assert path.read_text(encoding="utf-8") == "{}"
    assert _leftovers(tmp_path) == []


def test_text_mode_is_utf8_by_default_and_honours_encoding(tmp_path):
    path = tmp_path / "names.txt"
    atomic_write_text(path, "Zoë → 1\n")
    assert path.read_bytes() == "Zoë → 1\n".encode("utf-8").replace(b"\n", os.linesep.encode())
    with atomic_open(path, "w", encoding="latin-1", fsync=False) as handle:
        handle.write("Zoë")
    assert path.read_bytes() == b"Zo\xeb"


def test_bad_mode_and_encoding_in_binary_mode_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        with atomic_open(tmp_path / "x", "ab"):
            pass
    with pytest.raises(ValueError, match="text mode only"):
        with atomic_open(tmp_path / "x", "wb", encoding="utf-8"):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_file_gets_plain_open_permissions_not_mkstemp_0600(tmp_path):
    old_umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "shared.bin", b"x")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "shared.bin").stat().st_mode & 0o777 == 0o644


def test_failed_rename_keeps_old_content_and_removes_temp(tmp_path, monkeypatch):
    import personsearch.atomic as atomic

    path = tmp_path / "index.faiss"
    path.write_bytes(b"old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss"]
