"""``generate_dataset(..., resume=True)`` / ``personsearch data synth --resume``: an interrupted
generation continues where it stopped and ends byte-identical to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest

from personsearch.cli.main import main
from personsearch.data.synth import generate_dataset
from personsearch.errors import ConfigError

SETTINGS = dict(fmt="cuhk-sysu", frames=12, seed=4, width=96, height=64, workers=1)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("whole") / "data"
    generate_dataset(root, **SETTINGS)
    return _tree(root)


def test_resume_after_an_interruption_gives_the_same_bytes(uninterrupted, tmp_path):
    root = tmp_path / "data"
    generate_dataset(root, **SETTINGS)
    # an interruption during the frames: no annotations yet, some frames missing, one frame
    # with its image but not its mask (the mask is written last)
    images = sorted((root / "Image" / "SSM").iterdir())
    for path in images[:5]:
        path.unlink()
        (root / "masks" / (path.stem + ".png")).unlink()
    (root / "masks" / (images[6].stem + ".png")).unlink()
    for path in root.rglob("*.mat"):
        path.unlink()
    for name in ("train_identities.json", "test_identities.json", "counts.json"):
        (root / "diagnostics" / name).unlink()
    kept = images[7].stat().st_mtime_ns
    counts = generate_dataset(root, resume=True, **SETTINGS)
    assert sum(counts["frames"].values()) == 12
    assert images[7].stat().st_mtime_ns == kept  # a complete frame is not rendered again
    assert _tree(root) == uninterrupted


def test_resume_refuses_other_settings_and_a_folder_without_a_generation(tmp_path):
    root = tmp_path / "data"
    generate_dataset(root, **SETTINGS)
    with pytest.raises(ConfigError, match="seed differ"):
        generate_dataset(root, resume=True, **{**SETTINGS, "seed": 5})
    with pytest.raises(ConfigError, match="new or empty folder"):
        generate_dataset(root, **SETTINGS)
    other = tmp_path / "other"
    (other / "stuff").mkdir(parents=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        generate_dataset(other, resume=True, **SETTINGS)


def test_cli_resume_flag(tmp_path):
    root = tmp_path / "cli"
    args = ["data", "synth", str(root), "--format", "prw", "--frames", "6", "--width", "96",
            "--height", "64", "--workers", "1", "--seed", "2"]
    assert main(args) == 0
    first = _tree(root)
    next(iter(sorted((root / "frames").iterdir()))).unlink()
    assert main(args + ["--resume"]) == 0
    assert _tree(root) == first
