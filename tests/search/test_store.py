"""Gallery index: build, incremental updates, resume after a crash, the faiss cache, ranking."""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pytest

from search_fixtures import COLOURS, ColourEmbedder, colour_embedding, draw_scene
from personsearch.errors import IndexError_, PersonSearchError
from personsearch.search.build import build_index
from personsearch.search.query import rank, search_with_person
from personsearch.search.store import GalleryStore


def _persons_by_image(index_path) -> dict[str, int]:
    with GalleryStore.open(index_path) as store:
        return {row.rel_path: row.n_persons for row in store.images(0, 1000)}


def test_build_counts_and_settings(tmp_path, scene_dir, embedder):
    report = build_index(tmp_path / "idx", embedder, scene_dir, checkpoint="c.pt", progress=False)
    assert (report.added, report.changed, report.removed, report.unchanged) == (4, 0, 0, 0)
    assert report.persons_added == 5
    assert _persons_by_image(tmp_path / "idx") == {"a.png": 2, "b.png": 2, "d.png": 0, "sub/c.png": 1}
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.count_images() == 4 and store.count_persons() == 5
        assert store.settings.fingerprint == "colour-model-1"
        assert store.settings.embedding_dim == 8 and store.settings.index_type == "flat"
        assert store.settings.images_root == str(scene_dir.resolve())
        assert store.vector_index().ntotal == 5
        # boxes are the drawn rectangles, embeddings the unit colour vectors
        a = store.known_images()["a.png"][0]
        boxes = sorted(p.box for p in store.persons_of_image(a))
        assert boxes == [(5.0, 5.0, 20.0, 50.0), (40.0, 10.0, 55.0, 60.0)]
        ids, vectors = next(store.iter_embeddings())
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_rerun_without_changes_processes_nothing(tmp_path, scene_dir):
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    second = ColourEmbedder()
    report = build_index(tmp_path / "idx", second, scene_dir, progress=False)
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 0, 0, 4)
    assert second.calls == []


def test_incremental_add_change_delete(tmp_path, scene_dir):
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    with GalleryStore.open(tmp_path / "idx") as store:
        b_id_before = store.known_images()["b.png"][0]
    draw_scene(scene_dir / "new.png", [("cyan", (2, 2, 12, 40)), ("magenta", (50, 2, 70, 40))])  # add
    draw_scene(scene_dir / "b.png", [("blue", (10, 10, 25, 55))])  # change: the red person left
    (scene_dir / "sub" / "c.png").unlink()  # delete
    second = ColourEmbedder()
    report = build_index(tmp_path / "idx", second, scene_dir, progress=False)
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 2)
    assert sorted(report.processed) == ["b.png", "new.png"]
    assert len(second.calls) == 2  # only the new and the changed image went through the model
    assert _persons_by_image(tmp_path / "idx") == {"a.png": 2, "b.png": 1, "d.png": 0, "new.png": 2}
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.count_persons() == 5
        assert store.vector_index().ntotal == 5
        assert store.cache_events == []  # the cache was updated incrementally and is valid
        assert store.known_images()["b.png"][0] != b_id_before
        # the deleted yellow person cannot be found any more; only one red person is left
        hits = rank(store, colour_embedding(COLOURS["red"]), top_k=5, weighting="cosine")
        assert [h.image for h in hits].count("b.png") == 1
        assert hits[0].image == "a.png" and hits[0].cosine == pytest.approx(1.0, abs=1e-6)
        assert "sub/c.png" not in {h.image for h in hits}


def test_interrupted_build_resumes_without_redoing(tmp_path, scene_dir):
    for i in range(6):
        draw_scene(scene_dir / f"extra{i}.png", [("cyan", (2 + i, 2, 20 + i, 40))])
    crash_after = 3

    def crash(batch_number):
        if batch_number == crash_after - 1:
            raise RuntimeError("simulated crash")

    first = ColourEmbedder()
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(tmp_path / "idx", first, scene_dir, batch_size=2, progress=False, on_batch=crash)
    assert len(first.calls) == 6  # three batches of two were committed
    with GalleryStore.open(tmp_path / "idx") as store:
        done = set(store.known_images())
        assert len(done) == 6
        assert store.count_persons() == sum(_persons_by_image(tmp_path / "idx").values())
    second = ColourEmbedder()
    report = build_index(tmp_path / "idx", second, scene_dir, batch_size=2, progress=False)
    assert report.unchanged == 6 and report.added == 4
    assert not done & set(report.processed)  # finished images were not redone
    assert len(second.calls) == 4
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.count_images() == 10
        assert store.count_persons() == 5 + 6
        rows = store._query("SELECT image_id, x1, y1, x2, y2, COUNT(*) FROM persons GROUP BY image_id, x1, y1, x2, y2 HAVING COUNT(*) > 1")
        assert rows == []  # no duplicates
        assert store.vector_index().ntotal == 11


def test_crash_inside_a_batch_transaction_leaves_no_partial_batch(tmp_path, scene_dir):
    class Exploding(ColourEmbedder):
        def detect(self, images):
            result = super().detect(images)
            if len(self.calls) > 2:
                # corrupt output: the store rejects it and rolls the whole batch back
                boxes, scores, embeddings = result[-1]
                result[-1] = (boxes, scores, embeddings[:, :3])
            return result

    with pytest.raises(ValueError):
        build_index(tmp_path / "idx", Exploding(), scene_dir, batch_size=2, progress=False)
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.count_images() == 2  # the first batch only
        assert store.count_persons() == sum(p for p in _persons_by_image(tmp_path / "idx").values())


@pytest.mark.parametrize("damage", ["garbage", "truncate", "delete", "stale"])
def test_bad_vector_cache_is_rebuilt_from_sqlite(tmp_path, scene_dir, embedder, damage):
    build_index(tmp_path / "idx", embedder, scene_dir, progress=False)
    vectors = tmp_path / "idx" / "vectors.faiss"
    good = vectors.read_bytes()
    if damage == "garbage":
        vectors.write_bytes(good[:56] + b"\x00" * (len(good) - 56))
    elif damage == "truncate":
        vectors.write_bytes(good[: len(good) // 2])
    elif damage == "delete":
        vectors.unlink()
    else:  # a newer generation in SQLite than in the file (e.g. a crash before the file write)
        with GalleryStore.open(tmp_path / "idx") as store:
            store.set_meta({"generation": str(store.generation + 1)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with GalleryStore.open(tmp_path / "idx") as store:
            index = store.vector_index()
            assert index.ntotal == 5
            assert len(store.cache_events) == 1
            hits = rank(store, colour_embedding(COLOURS["green"]), top_k=1)
            assert hits[0].image == "a.png"
    with GalleryStore.open(tmp_path / "idx") as store:  # the rewritten cache is valid again
        store.vector_index()
        assert store.cache_events == []


def test_corrupt_or_foreign_sqlite_is_a_clear_error(tmp_path, scene_dir, embedder):
    build_index(tmp_path / "idx", embedder, scene_dir, progress=False)
    db = tmp_path / "idx" / "index.sqlite"
    with pytest.raises(IndexError_, match="index folder not found"):
        GalleryStore.open(tmp_path / "nothing-here")
    with pytest.raises(IndexError_, match="not a personsearch index"):
        GalleryStore.open(scene_dir)
    # wrong schema version
    connection = sqlite3.connect(db)
    connection.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    connection.commit()
    connection.close()
    with pytest.raises(IndexError_, match="schema version"):
        GalleryStore.open(tmp_path / "idx")
    # an embedding blob of the wrong size
    connection = sqlite3.connect(db)
    connection.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    connection.execute("UPDATE persons SET embedding=x'0000' WHERE id=(SELECT MIN(id) FROM persons)")
    connection.commit()
    connection.close()
    (tmp_path / "idx" / "vectors.faiss").unlink()
    with pytest.raises(IndexError_, match="corrupt embedding"):
        with GalleryStore.open(tmp_path / "idx") as store:
            store.vector_index()
    # another SQLite database, and a file that is not SQLite at all
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "index.sqlite").execute("CREATE TABLE x(a)").connection.close()
    with pytest.raises(IndexError_, match="missing tables"):
        GalleryStore.open(other)
    (other / "index.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexError_, match="corrupt or not an SQLite index"):
        GalleryStore.open(other)


def test_different_model_or_settings_refused(tmp_path, scene_dir, embedder):
    build_index(tmp_path / "idx", embedder, scene_dir, progress=False)
    with pytest.raises(IndexError_, match="different model"):
        build_index(tmp_path / "idx", ColourEmbedder(fingerprint="other"), scene_dir, progress=False)
    with pytest.raises(IndexError_, match="index type flat"):
        build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, index_type="hnsw", progress=False)
    with pytest.raises(IndexError_, match="min score"):
        build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, min_score=0.1, progress=False)
    with pytest.raises(PersonSearchError, match="images folder not found"):
        build_index(tmp_path / "idx", ColourEmbedder(), tmp_path / "missing", progress=False)
    one_file = next(scene_dir.iterdir())
    with pytest.raises(PersonSearchError, match="is a file; index build takes a folder"):
        build_index(tmp_path / "idx2", ColourEmbedder(), one_file, progress=False)


def test_unreadable_image_is_recorded_not_fatal(tmp_path, scene_dir, embedder):
    (scene_dir / "broken.jpg").write_bytes(b"not really a jpeg")
    report = build_index(tmp_path / "idx", embedder, scene_dir, progress=False)
    assert report.failed == 1
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.count_failed() == 1 and store.count_persons() == 5
    assert build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False).unchanged == 5


def test_min_score_filters_detections(tmp_path, scene_dir):
    embedder = ColourEmbedder(scores_by_colour={"green": 0.3})
    build_index(tmp_path / "idx", embedder, scene_dir, min_score=0.5, progress=False)
    assert _persons_by_image(tmp_path / "idx")["a.png"] == 1


def test_score_weighted_ranking_is_exact(tmp_path):
    """cosine x score ranking equals brute force, even when the best weighted hit is far down
    the cosine order."""
    root = tmp_path / "images"
    scores = {"red": 0.05, "magenta": 0.99, "yellow": 0.6, "green": 0.9, "blue": 0.8, "cyan": 0.7}
    for i, colour in enumerate(COLOURS):
        draw_scene(root / f"{i}.png", [(colour, (5, 5, 30, 50))])
    build_index(tmp_path / "idx", ColourEmbedder(scores_by_colour=scores), root, min_score=0.0, progress=False)
    query = colour_embedding(COLOURS["red"])
    expected = sorted(((float(colour_embedding(c) @ query) * scores[n], n) for n, c in COLOURS.items()), reverse=True)
    with GalleryStore.open(tmp_path / "idx") as store:
        hits = rank(store, query, top_k=3)
        assert [h.similarity for h in hits] == pytest.approx([e[0] for e in expected[:3]], abs=1e-5)
        assert hits[0].image != "0.png"  # the red person itself has a tiny score
        cosine_hits = rank(store, query, top_k=1, weighting="cosine")
        assert cosine_hits[0].image == "0.png" and cosine_hits[0].similarity == pytest.approx(1.0, abs=1e-6)
        assert rank(store, query, top_k=10, min_score=0.75)[-1].score >= 0.75
        with pytest.raises(PersonSearchError, match="weighting"):
            rank(store, query, weighting="dot")


def test_search_with_person_excludes_its_image(tmp_path, scene_dir, embedder):
    build_index(tmp_path / "idx", embedder, scene_dir, progress=False)
    with GalleryStore.open(tmp_path / "idx") as store:
        a = store.known_images()["a.png"][0]
        red = next(p for p in store.persons_of_image(a) if p.box[0] == 5.0)
        result = search_with_person(store, red.id, top_k=2)
        assert result.hits[0].image == "b.png" and result.hits[0].box == [60.0, 8.0, 75.0, 58.0]
        assert all(h.image_id != a for h in result.hits)
        with pytest.raises(PersonSearchError, match="no person with id"):
            search_with_person(store, 10_000)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_index_types(tmp_path, scene_dir, embedder, index_type):
    build_index(tmp_path / "idx", embedder, scene_dir, index_type=index_type, progress=False)
    draw_scene(scene_dir / "late.png", [("red", (1, 1, 9, 30))])
    (scene_dir / "b.png").unlink()
    build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)
    with GalleryStore.open(tmp_path / "idx") as store:
        assert store.settings.index_type == index_type
        assert store.vector_index().ntotal == store.count_persons() == 4
        hits = rank(store, colour_embedding(COLOURS["red"]), top_k=2, weighting="cosine")
        assert {h.image for h in hits} == {"a.png", "late.png"}


def test_second_concurrent_build_is_refused(tmp_path, scene_dir):
    def nested_build(batch_number):
        if batch_number == 0:
            with pytest.raises(IndexError_, match="another build is running"):
                build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False)

    report = build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False, on_batch=nested_build)
    assert report.added == 4
    assert build_index(tmp_path / "idx", ColourEmbedder(), scene_dir, progress=False).unchanged == 4
