"""The edge-case matrix (issue 13): every command that reads images or a model — train a few
iterations, eval, ablate one row, index build, search — over the inputs that are normal in
practice: images without persons, a model that detects nobody, batches mixing both, a single
image, grayscale / palette / RGBA PNG / CMYK / EXIF-rotated JPEG, an image smaller than the
smallest anchor, a very large image, file names with spaces and non-ASCII characters. Each
works, or (for inputs that are really broken) fails with exit 2 and ONE line naming the file
and the problem. (The serve API is covered by tests/search/test_server.py.)

One image set, written twice: as a COCO dataset with the odd file names (train, index build,
search) and as a PRW dataset with the same pixels in PRW frame names (eval, ablate: the
evaluation protocols are PRW / CUHK-SYSU). Models are tiny ``small``-backbone ones at 64-96
pixel test sizes, so the whole file takes seconds, not minutes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from personsearch.cli.main import main

BACKGROUND = 110
COLOURS = {1: (210, 40, 40), 2: (40, 60, 210), -1: (40, 190, 60)}


@dataclass
class Kind:
    """One image: upright size, persons [(x1, y1, x2, y2, pid)] in upright pixels, how it is
    stored (PIL mode / format / EXIF), its COCO file name and PRW frame stem."""

    key: str
    coco_name: str
    size: tuple[int, int]  # (width, height) upright
    persons: list = field(default_factory=list)
    mode: str = "RGB"
    fmt: str = "PNG"
    exif_rotated: bool = False


KINDS = [
    Kind("rgb", "scene one.jpg", (160, 96), [(20, 10, 44, 80, 1), (90, 20, 110, 84, 2)], fmt="JPEG"),
    Kind("gray", "grau ö.png", (160, 96), [(60, 8, 84, 78, 1)], mode="L"),
    Kind("palette", "調色板 palette.png", (160, 96), [(30, 12, 52, 80, 2)], mode="P"),
    Kind("rgba", "rgba image.png", (160, 96), [(100, 10, 124, 82, 1)], mode="RGBA"),
    Kind("cmyk", "cmyk.jpg", (160, 96), [(70, 14, 92, 84, 2)], mode="CMYK", fmt="JPEG"),
    Kind("exif", "phone photo (rotated).jpg", (160, 96), [(40, 10, 64, 86, 1)], fmt="JPEG",
         exif_rotated=True),
    Kind("empty", "empty room é.jpg", (160, 96), [], fmt="JPEG"),
    Kind("tiny", "tiny.png", (12, 8), [(2, 1, 7, 7, -1)]),
    Kind("large", "large.jpg", (4000, 3000), [(1000, 400, 1600, 2600, 2)], fmt="JPEG"),
]
BY_KEY = {kind.key: kind for kind in KINDS}


def render(kind: Kind, seed: int) -> np.ndarray:
    """uint8 [H, W, 3] upright: textured grey with one coloured rectangle per person."""
    width, height = kind.size
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), BACKGROUND, np.uint8)
    if kind.key != "empty":  # the empty room is flat: nothing to detect there
        pixels += rng.integers(0, 25, pixels.shape, dtype=np.uint8)
    for x1, y1, x2, y2, pid in kind.persons:
        pixels[y1:y2, x1:x2] = COLOURS[pid]
    return pixels


def save(kind: Kind, pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if kind.exif_rotated:  # stored sideways; orientation 6 tells viewers to turn it upright
        image = image.transpose(Image.Transpose.ROTATE_90)
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(path, format=kind.fmt, exif=exif, quality=92)
        return
    if kind.mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    elif kind.mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(140)
    elif kind.mode != "RGB":
        image = image.convert(kind.mode)
    image.save(path, format=kind.fmt, **({"quality": 92} if kind.fmt == "JPEG" else {}))


@dataclass
class Record:
    image_name: str
    boxes: np.ndarray
    person_ids: np.ndarray
    width: int
    height: int
    camera_id: int = 0


def record(name: str, kind: Kind, boxes=None) -> Record:
    persons = kind.persons if boxes is None else boxes
    return Record(name, np.asarray([p[:4] for p in persons], np.float32).reshape(-1, 4),
                  np.asarray([p[4] for p in persons], np.int64), kind.size[0], kind.size[1])


def prw_name(camera: int, index: int) -> str:
    return f"c{camera}s1_{index:06d}.jpg"


@dataclass
class World:
    coco: Path
    images: Path  # the COCO images folder: every kind, odd names
    prw: Path
    ckpt_some: Path  # detects persons
    ckpt_nobody: Path  # detects nobody


# PRW queries: (kind of the query frame, box index); gallery = every test frame
PRW_QUERIES = [("rgb", 0), ("exif", 0), ("cmyk", 0)]
MODEL_KWARGS = {"backbone": "small", "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 20,
                "detections_per_image": 8, "embedding_dim": 32}
EVAL_CONFIG = {"eval": {"min_size": 64, "max_size": 96}}


def tiny_checkpoint(path: Path, box_score_thresh: float) -> Path:
    from personsearch.engine.checkpoint import save_checkpoint
    from personsearch.models import build_model

    torch.manual_seed(0)
    kwargs = {**MODEL_KWARGS, "box_score_thresh": box_score_thresh}
    model = build_model(**kwargs)
    save_checkpoint(path, {"format_version": 1, "model_kwargs": kwargs, "model": model.state_dict(),
                           "method": "cgps", "config": EVAL_CONFIG, "epoch": 0, "iteration": 0})
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from personsearch.data.writers import write_coco, write_prw

    base = tmp_path_factory.mktemp("edge_matrix")
    coco, prw = base / "coco", base / "prw"
    pixels = {kind.key: render(kind, seed) for seed, kind in enumerate(KINDS)}
    for kind in KINDS:
        save(kind, pixels[kind.key], coco / "images" / kind.coco_name)
    coco_records = [record(kind.coco_name, kind) for kind in KINDS]
    queries = [record(BY_KEY[key].coco_name, BY_KEY[key], [BY_KEY[key].persons[box]])
               for key, box in PRW_QUERIES]
    write_coco(coco, coco_records, coco_records, queries)

    # PRW: the same pixels in frame names (train on camera 1, test on cameras 2 and 3)
    train, test, test_index = [], [], {}
    (prw / "frames").mkdir(parents=True)
    for i, kind in enumerate(KINDS):
        for split, camera in (("train", 1), ("test", 2 + i % 2)):
            name = prw_name(camera, 100 * (split == "test") + i)
            shutil.copyfile(coco / "images" / kind.coco_name, prw / "frames" / name)
            (train if split == "train" else test).append(record(name, kind))
            if split == "test":
                test_index[kind.key] = len(test) - 1
    prw_queries = [record(test[test_index[key]].image_name, BY_KEY[key], [BY_KEY[key].persons[box]])
                   for key, box in PRW_QUERIES]
    for query in prw_queries:
        query.camera_id = int(query.image_name[1])
    write_prw(prw, train, test, prw_queries)

    ckpt_some = calibrated_checkpoint(base, coco / "images")
    return World(coco, coco / "images", prw, ckpt_some, tiny_checkpoint(base / "nobody.pt", 0.9999))


def calibrated_checkpoint(folder: Path, images: Path) -> Path:
    """A random tiny model whose score threshold sits between the best first-stage scores of
    the images, so that `index build --batch-size 4` meets a batch mixing images with and
    without detections (the crash of issue 13). Measured, then checked: not assumed."""
    from personsearch.search.build import load_embedder, scan_images
    from personsearch.data.transforms import load_image

    probe = tiny_checkpoint(folder / "probe.pt", 0.0)
    embedder = load_embedder(str(probe), None, None)
    names = scan_images(images)
    best = []
    for start in range(0, len(names), 4):  # the batches `index build --batch-size 4` makes
        batch = [load_image(images / name) for name in names[start:start + 4]]
        best.append([float(np.max(scores, initial=0.0)) for _, scores, _ in embedder.detect(batch)])
    flat = sorted(score for batch in best for score in batch)
    threshold = (flat[len(flat) // 2 - 1] + flat[len(flat) // 2]) / 2
    mixed = [b for b in best if min(b) < threshold < max(b)]
    assert mixed, f"no batch mixes images with and without detections at {threshold}: {best}"
    return tiny_checkpoint(folder / "some.pt", threshold)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


SHRINK = {
    "data.min_size": 64, "data.max_size": 96, "data.multi_scale": [], "data.batch_size": 2,
    "data.workers": 0, "data.masks": False, "data.flip": True,
    "model.rpn_pre_nms_top_n_train": 200, "model.rpn_post_nms_top_n_train": 64,
    "model.roi_batch_size_per_image": 16, "model.rpn_pre_nms_top_n_test": 100,
    "model.rpn_post_nms_top_n_test": 20,
    "solver.epochs": 1, "solver.warmup_iters": 1, "solver.lr_steps": [5],
    "train.progress": False, "train.log_every": 1, "train.checkpoint_every_iters": 0,
    "train.eval_every_epochs": 0, "eval.min_size": 64, "eval.max_size": 96,
}


def set_args(overrides: dict) -> list[str]:
    return [a for key, value in overrides.items() for a in ("--set", f"{key}={json.dumps(value)}")]


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# ---------------------------------------------------------------------------------- train

@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """SeqNet trains one epoch on the PRW copy: every kind, the empty room and the tiny image
    in batches of 2 mixed with images that have persons."""
    out = tmp_path_factory.mktemp("train") / "run"
    code = main(["train", str(CONFIGS / "seqnet_synthetic.yaml"), "--out", str(out),
                 *set_args({**SHRINK, "data.root": str(world.prw)})])
    assert code == 0
    return out / "checkpoints" / "last.pt"


def test_train_over_every_kind(trained):
    from personsearch.engine.checkpoint import load_checkpoint

    state = load_checkpoint(trained)
    assert state["epoch"] == 1 and state["iteration"] == -(-len(KINDS) // 2)


def test_train_on_odd_file_names(world, tmp_path, capsys):
    """The COCO copy (spaces, non-ASCII, brackets); its reader drops train images without a
    box or under 32 px (mmdetection's rule: the empty room and the tiny image), 7 remain."""
    code, out, err = run(capsys, "train", CONFIGS / "cgps_synthetic.yaml", "--out", tmp_path / "run",
                         *set_args({**SHRINK, "data.format": "coco", "data.root": str(world.coco)}))
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["iteration"] == 4


def test_train_on_a_single_image(world, tmp_path, capsys):
    from personsearch.data.writers import write_coco

    root = tmp_path / "single"
    kind = BY_KEY["exif"]
    (root / "images").mkdir(parents=True)
    shutil.copyfile(world.images / kind.coco_name, root / "images" / kind.coco_name)
    only = record(kind.coco_name, kind)
    write_coco(root, [only], [only], [record(kind.coco_name, kind, [kind.persons[0]])])
    code, _, err = run(capsys, "train", CONFIGS / "cgps_synthetic.yaml", "--out", tmp_path / "run",
                       *set_args({**SHRINK, "data.format": "coco", "data.root": str(root)}))
    assert code == 0, err


def test_train_without_any_person_is_one_line_naming_the_dataset(world, tmp_path, capsys):
    """Every training image without persons: no memory row to train (was an internal
    'num_slots and dim must be positive' message)."""
    from personsearch.data.writers import write_prw

    root = tmp_path / "nobody"
    (root / "frames").mkdir(parents=True)
    train = []
    for i, key in enumerate(("empty", "tiny", "large")):
        name = prw_name(1, i)
        shutil.copyfile(world.images / BY_KEY[key].coco_name, root / "frames" / name)
        train.append(record(name, BY_KEY[key], []))
    test_name = prw_name(2, 100)
    shutil.copyfile(world.images / BY_KEY["rgb"].coco_name, root / "frames" / test_name)
    test = [record(test_name, BY_KEY["rgb"])]
    query = record(test_name, BY_KEY["rgb"], [BY_KEY["rgb"].persons[0]])
    query.camera_id = 2
    write_prw(root, train, test, [query])
    code, _, err = run(capsys, "train", CONFIGS / "cgps_synthetic.yaml", "--out", tmp_path / "run",
                       *set_args({**SHRINK, "data.root": str(root)}))
    assert_one_line_error(code, err, str(root), "training split has 3 images but no person box")


def test_train_with_a_broken_image_names_it(world, tmp_path, capsys):
    root = tmp_path / "broken"
    shutil.copytree(world.coco, root)
    broken = root / "images" / BY_KEY["gray"].coco_name
    broken.write_bytes(broken.read_bytes()[:60])
    code, _, err = run(capsys, "train", CONFIGS / "seqnet_synthetic.yaml", "--out", tmp_path / "run",
                       *set_args({**SHRINK, "data.format": "coco", "data.root": str(root)}))
    assert_one_line_error(code, err, BY_KEY["gray"].coco_name)


# ---------------------------------------------------------------------------------- eval

@pytest.mark.parametrize("which, variant", [
    ("trained", []), ("some", []), ("some", ["--query-from-detection"]), ("nobody", []),
    ("nobody", ["--query-from-detection"]), ("nobody", ["--use-gt-boxes"]),
], ids=["trained", "some", "some-query_from_detection", "nobody", "nobody-query_from_detection",
        "nobody-gt_boxes"])
def test_eval(world, trained, tmp_path, capsys, which, variant):
    checkpoint = {"trained": trained, "some": world.ckpt_some, "nobody": world.ckpt_nobody}[which]
    metrics_json = tmp_path / "eval.json"
    code, out, err = run(capsys, "eval", checkpoint, "--dataset", "prw", "--root", world.prw,
                         "--no-progress", "--json", metrics_json, *variant)
    assert code == 0, err
    metrics = json.loads(metrics_json.read_text())
    assert metrics["num_queries"] == len(PRW_QUERIES)
    if which == "nobody" and not variant:
        assert metrics["mAP"] == 0.0 and metrics["det_recall"] == 0.0
    if which == "nobody" and variant == ["--query-from-detection"]:
        assert metrics["queries_without_query_detection"] == len(PRW_QUERIES)
        assert "no detection in the query frame" in out


def _prw_copy(world, tmp_path) -> Path:
    root = tmp_path / "prw"
    shutil.copytree(world.prw, root)
    return root


def test_eval_with_a_broken_gallery_image_names_it(world, tmp_path, capsys):
    root = _prw_copy(world, tmp_path)
    frame = root / "frames" / prw_name(3, 101)
    frame.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, _, err = run(capsys, "eval", world.ckpt_some, "--dataset", "prw", "--root", root,
                       "--no-progress")
    assert_one_line_error(code, err, prw_name(3, 101), "unreadable image")


@pytest.mark.parametrize("line, problem", [
    ("1 20 10 0 70 c2s1_000100\r\n", "zero or negative size"),
    ("1 400 10 30 70 c2s1_000100\r\n", "entirely outside the 160x96 image"),
])
def test_eval_refuses_an_unusable_query_box(world, tmp_path, capsys, line, problem):
    root = _prw_copy(world, tmp_path)
    query_info = root / "query_info.txt"
    query_info.write_text(line + query_info.read_text().split("\n", 1)[1], newline="")
    code, _, err = run(capsys, "eval", world.ckpt_some, "--dataset", "prw", "--root", root,
                       "--no-progress")
    assert_one_line_error(code, err, "c2s1_000100.jpg: query 0", problem)


# ---------------------------------------------------------------------------------- ablate

def test_ablate_one_row(world, tmp_path, capsys):
    """SSL's baseline row: memory initialisation, clustering and the exemplar branch over every
    kind (no masks in this dataset)."""
    overrides = {**SHRINK, "data.root": str(world.prw), "method.params.use_masks": False,
                 "model.box_score_thresh": 0.0}
    code, out, err = run(capsys, "ablate", CONFIGS / "ssl_synthetic.yaml", "--rows", "baseline",
                         "--out", tmp_path / "ablation", *set_args(overrides))
    assert code == 0, err
    results = json.loads((tmp_path / "ablation" / "results.json").read_text())
    assert results["baseline"]["metrics"]["num_queries"] == len(PRW_QUERIES)
    assert (tmp_path / "ablation" / "embedding.png").is_file()


def test_ablate_evaluation_of_a_model_that_detects_nobody(world):
    """The row evaluation `ablate` runs (was `cannot reshape array of size 0`)."""
    from personsearch.cli.ablate import evaluate_row
    from personsearch.config import load_config

    overrides = [f"{key}={json.dumps(value)}" for key, value in
                 {**SHRINK, "data.root": str(world.prw), "method.params.use_masks": False}.items()]
    metrics = evaluate_row(world.ckpt_nobody, load_config(CONFIGS / "ssl_synthetic.yaml", overrides))
    assert metrics["mAP"] == 0.0 and metrics["num_queries"] == len(PRW_QUERIES)
    assert metrics["queries_far_scale"] + metrics["queries_near_scale"] == len(PRW_QUERIES)


# ---------------------------------------------------------------------------------- index + search

def _index_info(capsys, index: Path) -> dict:
    code, out, err = run(capsys, "index", "info", index, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def index_some(world, tmp_path_factory):
    index = tmp_path_factory.mktemp("index_some") / "index"
    assert main(["index", "build", str(world.ckpt_some), str(world.images), "--out", str(index),
                 "--quiet"]) == 0  # default --batch-size 4: a batch mixes both (see calibration)
    return index


def test_index_build_over_every_kind_with_mixed_batches(index_some, capsys):
    info = _index_info(capsys, index_some)
    assert info["images"] == len(KINDS) and info["unreadable_images"] == 0
    assert info["persons"] > 0


@pytest.mark.parametrize("batch_size", ["1", "3"])
def test_index_build_with_a_model_that_detects_nobody(world, tmp_path, capsys, batch_size):
    code, out, err = run(capsys, "index", "build", world.ckpt_nobody, world.images,
                         "--out", tmp_path / "index", "--quiet", "--batch-size", batch_size)
    assert code == 0, err
    assert f"{len(KINDS)} images: {len(KINDS)} added" in out and "0 persons added" in out
    code, out, err = run(capsys, "search", tmp_path / "index", "--query",
                         world.images / BY_KEY["rgb"].coco_name, "--box", "20,10,44,80")
    assert code == 0, err
    assert "(no hits)" in out


def test_index_build_of_a_single_image_and_a_broken_one(world, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copyfile(world.images / BY_KEY["tiny"].coco_name, folder / "only one.png")
    code, out, err = run(capsys, "index", "build", world.ckpt_some, folder, "--out",
                         tmp_path / "index", "--quiet")
    assert code == 0, err and "1 images: 1 added" in out
    (folder / "broken photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, err = run(capsys, "index", "build", world.ckpt_some, folder, "--out",
                         tmp_path / "index", "--quiet")
    assert code == 0, err  # an unreadable file is recorded and reported, not fatal
    assert "1 unreadable" in out


@pytest.mark.parametrize("key", [kind.key for kind in KINDS if kind.persons])
def test_search_with_a_query_of_every_kind(world, index_some, tmp_path, capsys, key):
    kind = BY_KEY[key]
    box = ",".join(str(v) for v in kind.persons[0][:4])
    code, out, err = run(capsys, "search", index_some, "--query", world.images / kind.coco_name,
                         "--box", box, "--top", "3", "--out", tmp_path / "results")
    assert code == 0, err
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert len(results["hits"]) <= 3 and (tmp_path / "results" / "results.png").is_file()


def test_search_errors_are_one_line_naming_the_file(world, index_some, tmp_path, capsys):
    name = BY_KEY["tiny"].coco_name
    code, _, err = run(capsys, "search", index_some, "--query", world.images / name, "--box",
                       "20,20,40,40")
    assert_one_line_error(code, err, name, "outside the image (12x8)")
    broken = tmp_path / "broken query é.jpg"
    broken.write_bytes(b"GIF89a nothing")
    code, _, err = run(capsys, "search", index_some, "--query", broken, "--box", "1,1,5,5")
    assert_one_line_error(code, err, "broken query é.jpg")
