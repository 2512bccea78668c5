"""The index / search command lines with a tiny real model (random seeded weights, "small"
backbone) on tiny drawn scenes: build, info, search (table, JSON, picture), bad queries,
fingerprint mismatch, and a build killed mid-way then resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from search_fixtures import SCENES, draw_scene
from personsearch.cli.main import main

TINY_TEST_PROPOSALS = 30  # rpn_post_nms_top_n_test of conftest.tiny_checkpoint


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("cli")
    images = root / "images"
    for name, persons in SCENES.items():
        draw_scene(images / name, persons)
    code = main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(root / "idx"),
                 "--min-score", "0", "--batch-size", "2", "--quiet"])
    assert code == 0
    return root, images, root / "idx"


def test_build_and_info(built, tiny_checkpoint, capsys):
    root, images, index = built
    assert main(["index", "info", str(index), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 4 and info["persons"] > 0 and info["vectors_in_faiss"] == info["persons"]
    assert info["embedding_dim"] == 32 and info["index_type"] == "flat"
    assert info["checkpoint"] == str(tiny_checkpoint.resolve())
    assert info["preprocessing"] == {"min_size": 64, "max_size": 96}  # from the checkpoint's eval config
    assert info["test_proposals"] == TINY_TEST_PROPOSALS  # the checkpoint's RPN setting, recorded
    assert info["vector_cache"] == "valid" and info["sizes_bytes"]["vectors.faiss"] > 0
    # re-running processes nothing
    assert main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(index), "--quiet"]) == 0
    assert "0 added, 0 changed, 0 removed, 4 unchanged" in capsys.readouterr().out


def test_build_with_other_test_proposals_is_refused_then_recorded(built, tiny_checkpoint, tmp_path, capsys):
    root, images, index = built
    assert main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(index), "--quiet",
                 "--test-proposals", "5"]) == 2
    assert f"test proposals {TINY_TEST_PROPOSALS} (got 5; pass --test-proposals {TINY_TEST_PROPOSALS})" \
        in capsys.readouterr().err
    other = tmp_path / "idx5"
    assert main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(other), "--quiet",
                 "--min-score", "0", "--test-proposals", "5"]) == 0
    capsys.readouterr()
    assert main(["index", "info", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_proposals"] == 5
    assert main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(tmp_path / "idx0"),
                 "--quiet", "--test-proposals", "0"]) == 2
    assert "--test-proposals: test proposals must be a positive integer, got 0" in capsys.readouterr().err


def test_indexing_runs_the_folded_channels_last_model(tiny_checkpoint):
    import torch

    from personsearch.search.build import load_embedder

    embedder = load_embedder(tiny_checkpoint)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in embedder.model.modules())
    conv = next(m for m in embedder.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert embedder.test_proposals == embedder.checkpoint_test_proposals == TINY_TEST_PROPOSALS


def test_index_from_before_test_proposals_were_recorded(tiny_checkpoint, tmp_path, capsys):
    """An index whose meta has no test_proposals was built with the checkpoint's own count:
    a different --test-proposals is refused, the default is accepted; a malformed value is a
    clear metadata error."""
    images = tmp_path / "images"
    for name, persons in SCENES.items():
        draw_scene(images / name, persons)
    index = tmp_path / "old"
    assert main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(index), "--quiet"]) == 0
    with sqlite3.connect(index / "index.sqlite") as connection:
        connection.execute("DELETE FROM meta WHERE key = 'test_proposals'")
    capsys.readouterr()
    assert main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(index), "--quiet",
                 "--test-proposals", "5"]) == 2
    assert f"test proposals {TINY_TEST_PROPOSALS} (got 5;" in capsys.readouterr().err
    assert main(["index", "build", str(tiny_checkpoint), str(images), "--out", str(index), "--quiet"]) == 0
    with sqlite3.connect(index / "index.sqlite") as connection:
        connection.execute("INSERT INTO meta (key, value) VALUES ('test_proposals', '\"many\"')")
    capsys.readouterr()
    assert main(["index", "info", str(index)]) == 2
    assert "test_proposals must be a positive integer or null" in capsys.readouterr().err


def test_search_table_json_and_picture(built, capsys):
    root, images, index = built
    out = root / "results"
    assert main(["search", str(index), "--query", str(images / "a.png"), "--box", "5,5,20,50",
                 "--top", "3", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 1 <= len(result["hits"]) <= 3
    assert [h["rank"] for h in result["hits"]] == list(range(1, len(result["hits"]) + 1))
    sims = [h["similarity"] for h in result["hits"]]
    assert sims == sorted(sims, reverse=True)
    assert all(h["image"] != "a.png" for h in result["hits"])  # the query's own image is left out
    assert json.loads((out / "results.json").read_text()) == result
    with Image.open(out / "results.png") as picture:
        assert picture.width > picture.height > 100
    person = result["hits"][0]["person_id"]
    assert main(["search", str(index), "--query-index", str(person), "--top", "2"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["rank", "similarity"]


@pytest.mark.parametrize("args, message", [
    (["--box", "1,2,3"], "bad box '1,2,3': expected four numbers"),
    (["--box", "a,b,c,d"], "expected four numbers"),
    (["--box", "20,5,5,50"], "needs x2 > x1"),
    (["--box", "50,10,200,60"], "outside the image (96x64)"),
    ([], "--query needs --box"),
])
def test_bad_queries_are_clear_errors(built, capsys, args, message):
    root, images, index = built
    assert main(["search", str(index), "--query", str(images / "a.png"), *args]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_query_image_and_missing_index(built, tmp_path, capsys):
    root, images, index = built
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    assert main(["search", str(index), "--query", str(broken), "--box", "1,1,5,5"]) == 2
    assert f"{broken}: not a readable image" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "nope"), "--query-index", "1"]) == 2
    assert "index folder not found" in capsys.readouterr().err


def test_fingerprint_mismatch(built, tmp_path, capsys):
    from personsearch.engine.checkpoint import load_checkpoint, save_checkpoint

    root, images, index = built
    state = load_checkpoint(_checkpoint_of(index))
    state["model"] = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in state["model"].items()}
    other = tmp_path / "other.pt"
    save_checkpoint(other, state)
    assert main(["search", str(index), "--query", str(images / "a.png"), "--box", "5,5,20,50",
                 "--checkpoint", str(other)]) == 2
    assert "index was built by a different model" in capsys.readouterr().err
    assert main(["index", "build", str(other), str(images), "--out", str(index), "--quiet"]) == 2
    assert "different model" in capsys.readouterr().err


def _checkpoint_of(index: Path) -> str:
    connection = sqlite3.connect(index / "index.sqlite")
    try:
        return connection.execute("SELECT value FROM meta WHERE key='checkpoint'").fetchone()[0]
    finally:
        connection.close()


def test_killed_build_resumes(tmp_path, tiny_checkpoint, capsys):
    images = tmp_path / "images"
    total = 16  # enough that even a fast machine is still building when the kill comes
    for i in range(total):
        draw_scene(images / f"{i:02d}.png", [("red", (2 + 2 * i, 4, 20 + 2 * i, 50))])
    index = tmp_path / "idx"
    command = [sys.executable, "-m", "personsearch.cli.main", "index", "build", str(tiny_checkpoint), str(images),
               "--out", str(index), "--batch-size", "1", "--min-score", "0", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    done_before_kill = 0
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (index / "index.sqlite").exists():
                try:
                    connection = sqlite3.connect(f"file:{index / 'index.sqlite'}?mode=ro", uri=True, timeout=1)
                    done_before_kill = connection.execute("SELECT COUNT(*) FROM images").fetchone()[0]
                    connection.close()
                except sqlite3.OperationalError:
                    pass
                if done_before_kill >= 2:
                    break
            time.sleep(0.01)
        if process.poll() is not None:
            pytest.fail(f"build finished before it could be killed: {process.stderr.read().decode()[-2000:]}")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert 2 <= done_before_kill < total

    connection = sqlite3.connect(index / "index.sqlite")
    finished = {row[0] for row in connection.execute("SELECT rel_path FROM images")}
    connection.close()
    assert finished and len(finished) < total
    resumed = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{total - len(finished)} added" in resumed.stdout and f"{len(finished)} unchanged" in resumed.stdout

    connection = sqlite3.connect(index / "index.sqlite")
    assert connection.execute("SELECT COUNT(*) FROM images").fetchone()[0] == total
    duplicates = connection.execute("SELECT rel_path, COUNT(*) FROM images GROUP BY rel_path HAVING COUNT(*) > 1").fetchall()
    persons = connection.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
    orphans = connection.execute("SELECT COUNT(*) FROM persons WHERE image_id NOT IN (SELECT id FROM images)").fetchone()[0]
    connection.close()
    assert duplicates == [] and orphans == 0
    assert main(["index", "info", str(index), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["persons"] == persons == data["vectors_in_faiss"]
    assert data["vector_cache"] == "valid"
