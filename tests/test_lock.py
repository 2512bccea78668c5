"""requirements.lock (issue 13: reproducible installs) pins every requirement pyproject.toml
declares, within pyproject's ranges, and is what the environment running the tests holds
(``make test`` installs it; a stale lock after an upgrade shows here: run ``make lock``)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def locked() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        assert version, f"requirements.lock: {line!r} is not pinned with =="
        assert "+" not in version, f"requirements.lock: {line!r} carries a local version label"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_every_declared_requirement_is_pinned_within_its_range():
    pins = locked()
    assert "personsearch" not in pins  # the project installs with --no-deps -e .
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock (run make lock)"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]} outside pyproject's {requirement}"


def test_the_environment_holds_the_locked_versions():
    for name, version in locked().items():
        installed = Version(metadata.version(name))
        # a local label (torch 2.13.0+cpu) is the same release
        assert Version(installed.public) == version, \
            f"{name}: {installed} installed, {version} locked (run make lock after an upgrade)"
