"""The annotation parse cache: each file parsed once, invalidated when the file changes, never a
different answer than a fresh parse."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from personsearch.data import load_split, parse_cache
from personsearch.data.check import ProblemLog
from personsearch.data.cuhk_sysu import load_cuhk_protocol, read_split as read_cuhk_split
from personsearch.data.prw import read_frames


@pytest.fixture
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PERSONSEARCH_CACHE_DIR", str(folder))
    parse_cache.clear_memory()
    yield folder
    parse_cache.clear_memory()


def _counting_parse(calls: list[int], value: float = 1.0):
    def parse():
        calls.append(1)
        return {"values": np.array([value, 2.0]), "names": np.array(["a.jpg", "bé.jpg"])}
    return parse


def test_second_read_does_not_parse_and_a_new_process_reads_the_disk(tmp_path, cache_folder):
    source = tmp_path / "file.mat"
    source.write_bytes(b"12345")
    calls: list[int] = []
    first = parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    second = parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    assert len(calls) == 1 and second is first
    parse_cache.clear_memory()  # as a new process would start
    third = parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    assert len(calls) == 1
    assert third["names"].tolist() == ["a.jpg", "bé.jpg"]
    np.testing.assert_array_equal(third["values"], [1.0, 2.0])
    assert len(list((cache_folder / "annotations").glob("*.npz"))) == 1


def test_a_changed_file_or_another_kind_is_parsed_again(tmp_path, cache_folder):
    source = tmp_path / "file.mat"
    source.write_bytes(b"12345")
    calls: list[int] = []
    parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    parse_cache.cached_arrays([source], "other kind", _counting_parse(calls))
    assert len(calls) == 2
    replacement = tmp_path / "new.mat"
    replacement.write_bytes(b"12345")  # same size, new inode (what an atomic rewrite does)
    os.replace(replacement, source)
    value = parse_cache.cached_arrays([source], "kind", _counting_parse(calls, 7.0))
    assert len(calls) == 3 and value["values"][0] == 7.0


def test_a_failed_parse_is_not_stored(tmp_path, cache_folder):
    source = tmp_path / "file.mat"
    source.write_bytes(b"x")

    def failing():
        raise RuntimeError("bad file")

    with pytest.raises(RuntimeError):
        parse_cache.cached_arrays([source], "kind", failing)
    calls: list[int] = []
    parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    assert calls == [1]


def test_object_arrays_are_refused(tmp_path, cache_folder):
    source = tmp_path / "file.mat"
    source.write_bytes(b"x")
    with pytest.raises(TypeError, match="dtype object"):
        parse_cache.cached_arrays([source], "kind",
                                  lambda: {"bad": np.array([None, 1], dtype=object)})


def test_missing_source_is_parsed_uncached(tmp_path, cache_folder):
    calls: list[int] = []
    parse_cache.cached_arrays([tmp_path / "missing.mat"], "kind", _counting_parse(calls))
    parse_cache.cached_arrays([tmp_path / "missing.mat"], "kind", _counting_parse(calls))
    assert len(calls) == 2 and not cache_folder.exists()


def test_off_keeps_memory_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONSEARCH_CACHE_DIR", "off")
    parse_cache.clear_memory()
    source = tmp_path / "file.mat"
    source.write_bytes(b"x")
    calls: list[int] = []
    parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    assert len(calls) == 1 and parse_cache.cache_dir() is None
    parse_cache.clear_memory()


def test_a_corrupt_entry_is_parsed_again_and_replaced(tmp_path, cache_folder):
    source = tmp_path / "file.mat"
    source.write_bytes(b"x")
    calls: list[int] = []
    parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    (entry,) = (cache_folder / "annotations").glob("*.npz")
    entry.write_bytes(b"not a zip file")
    parse_cache.clear_memory()
    value = parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    assert len(calls) == 2 and value["names"].tolist() == ["a.jpg", "bé.jpg"]
    parse_cache.clear_memory()
    parse_cache.cached_arrays([source], "kind", _counting_parse(calls))
    assert len(calls) == 2  # the entry was rewritten


def _same_records(left, right) -> None:
    assert [r.image_name for r in left] == [r.image_name for r in right]
    for a, b in zip(left, right):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.person_ids, b.person_ids)
        assert (a.width, a.height, a.camera_id) == (b.width, b.height, b.camera_id)


def test_cuhk_reads_from_the_cache_equal_a_fresh_parse(cuhk_root, cache_folder):
    for split in ("train", "gallery", "query"):
        fresh = read_cuhk_split(cuhk_root, split, ProblemLog(collect=True))  # never cached
        cold = read_cuhk_split(cuhk_root, split, ProblemLog())
        parse_cache.clear_memory()
        warm = read_cuhk_split(cuhk_root, split, ProblemLog())  # from disk
        _same_records(fresh, cold)
        _same_records(fresh, warm)
    assert list((cache_folder / "annotations").glob("*.npz"))
    parse_cache.clear_memory()
    for size in (50, 100):
        cold = load_cuhk_protocol(cuhk_root, size)
        warm = load_cuhk_protocol(cuhk_root, size)
        for a, b in zip(cold, warm):
            assert a.query_name == b.query_name
            np.testing.assert_array_equal(a.query_box, b.query_box)
            assert [n for n, _ in a.gallery] == [n for n, _ in b.gallery]
            assert [None if x is None else x.tolist() for _, x in a.gallery] == \
                [None if x is None else x.tolist() for _, x in b.gallery]


def test_prw_reads_from_the_cache_equal_a_fresh_parse_and_see_edits(prw_root, cache_folder):
    fresh = read_frames(prw_root, "gallery", ProblemLog(collect=True))
    cold = read_frames(prw_root, "gallery", ProblemLog())
    parse_cache.clear_memory()
    warm = read_frames(prw_root, "gallery", ProblemLog())
    _same_records(fresh, cold)
    _same_records(fresh, warm)
    # an annotation file rewritten (atomically, as editors and our writers do) is read anew
    import scipy.io

    first = sorted((prw_root / "annotations").glob("c3s2*"))[0]
    replacement = first.with_name("replacement.mat")
    scipy.io.savemat(str(replacement), {"box_new": np.array([[9.0, 1, 2, 30, 40]])})
    os.replace(replacement, first)
    edited = load_split("prw", prw_root, "gallery")
    assert edited[0].person_ids.tolist() == [9]
    assert edited[0].boxes.tolist() == [[1, 2, 31, 42]]
