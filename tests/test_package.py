"""The package installs whole (issue 12 item 4): a wheel built from pyproject.toml + src/ with
``python -m build`` and installed into a fresh virtual environment (``--no-deps``; torch and the
other dependencies are borrowed from the running environment's site-packages through a .pth
file, so no 5 GB install) lists the presets, resolves a preset by name, trains a tiny run of a
preset named by name and runs a tiny demo, all from a folder outside the repository; and no
module reaches outside the package with ``Path(__file__).parents[n]``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about a minute: builds and installs a wheel, trains twice

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "personsearch"
TINY = ["data.min_size=90", "data.max_size=160", "data.batch_size=2", "data.workers=0",
        "solver.epochs=1", "solver.warmup_iters=1", "solver.lr_steps=[5]",
        "model.rpn_pre_nms_top_n_train=100", "model.rpn_post_nms_top_n_train=32",
        "model.roi_batch_size_per_image=8", "train.progress=false", "train.log_every=1",
        "train.checkpoint_every_iters=0", "eval.min_size=90", "eval.max_size=160"]


def test_no_module_reaches_outside_the_package():
    offenders = [f"{path.relative_to(SRC)}:{number}"
                 for path in sorted(SRC.rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"\.parents\[\d+\]|\.parent\.parent", line)]
    assert offenders == []


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(bin folder of a fresh venv with the built wheel installed, environment to run it in)."""
    work = tmp_path_factory.mktemp("package")
    tree = work / "tree"  # a copy: building writes build/ and *.egg-info next to the sources
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(SRC, tree / "src" / "personsearch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"),
         str(tree)], work, env)
    wheel = next((work / "dist").glob("personsearch-*.whl"))
    target = work / "venv"
    venv.create(target, with_pip=False)
    target_python = target / "bin" / "python"
    target_site = Path(run([str(target_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           work, env).strip())
    # the dependencies (torch, numpy, ...) from this environment, after the venv's own packages
    (target_site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(target_python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)], work, env)
    return target / "bin", env


def test_the_installed_package_is_the_wheel(installed, tmp_path):
    bin_dir, env = installed
    where = run([str(bin_dir / "python"), "-c", "import personsearch; print(personsearch.__file__)"],
                tmp_path, env)
    assert str(bin_dir.parent) in where and str(REPO) not in where


def test_every_file_of_the_package_is_installed(installed, tmp_path):
    """Modules and data (presets, web page, the demo's recorded run when there is one)."""
    bin_dir, env = installed
    where = Path(run([str(bin_dir / "python"), "-c", "import personsearch; print(personsearch.__file__)"],
                     tmp_path, env).strip()).parent
    def files(root: Path) -> set[str]:
        return {str(path.relative_to(root)) for path in root.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}
    assert files(SRC) == files(where)


def test_config_list_and_show_from_the_wheel(installed, tmp_path):
    bin_dir, env = installed
    listing = run([str(bin_dir / "personsearch"), "config", "list"], tmp_path, env)
    names = [line.split()[0] for line in listing.splitlines()]
    assert names == sorted(path.stem for path in (SRC / "configs").glob("*.yaml"))
    assert "ssl_synthetic" in names and "seqnet_prw" in names
    shown = run([str(bin_dir / "personsearch"), "config", "show", "cgps_cuhk", "--set", "solver.lr=0.5"],
                tmp_path, env)
    assert "format: cuhk-sysu" in shown and "lr: 0.5" in shown and "roi_head: cgps" in shown


def test_train_a_preset_by_name_and_run_the_demo_from_the_wheel(installed, tmp_path):
    bin_dir, env = installed
    cli = str(bin_dir / "personsearch")
    data = tmp_path / "synth"
    run([cli, "data", "synth", str(data), "--format", "prw", "--frames", "8", "--width", "320",
         "--height", "180", "--workers", "1", "--seed", "3"], tmp_path, env)
    sets = [arg for item in TINY for arg in ("--set", item)]
    run([cli, "train", "seqnet_synthetic", "--out", str(tmp_path / "run"), "--set",
         f"data.root={data}", *sets], tmp_path, env)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert "usage: personsearch demo" in run([cli, "demo", "--help"], tmp_path, env)
    demo = run([cli, "demo", "--data", str(tmp_path / "demo_data"), "--frames", "8",
                "--out", str(tmp_path / "demo"), "--queries", "2", *sets], tmp_path, env)
    assert "demo finished" in demo and (tmp_path / "demo" / "search_results.png").is_file()
