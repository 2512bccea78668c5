"""docs/architecture.md names only what exists: every ``*.py`` file it mentions is a file of the
repository (package, tests, benchmarks), every function or class it writes as a call in backticks
(``name(`` or ``module.name(``) and every class it names alone in backticks (``MethodContext``,
``models.TrainOutput``) is defined (``def`` / ``class``) in the package source."""

from __future__ import annotations

import builtins
import re
from pathlib import Path

import personsearch

PACKAGE = Path(personsearch.__file__).parent
REPOSITORY = Path(__file__).resolve().parents[1]
DOC = REPOSITORY / "docs" / "architecture.md"


def mentioned_files(text: str) -> set[str]:
    """``data/records.py``, ``comm.py``, ``tests/toys.py`` ... as written."""
    return set(re.findall(r"[\w/]+\.py\b", text))


def mentioned_calls(text: str) -> set[str]:
    """The last name of every call inside an inline backtick span (fenced code blocks are
    skipped): ``models.build_model(`` -> ``build_model``."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    names = set()
    for span in re.findall(r"`([^`]+)`", prose):
        names.update(name.split(".")[-1] for name in re.findall(r"([A-Za-z_][\w.]*)\(", span)
                     if not name.startswith("torch.") and name not in dir(builtins))
    return names


def mentioned_classes(text: str) -> set[str]:
    """Capitalised names standing alone (or dotted) in an inline backtick span."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return {span.split(".")[-1] for span in re.findall(r"`([^`]+)`", prose)
            if re.fullmatch(r"[A-Za-z_][\w.]*", span)
            and re.fullmatch(r"[A-Z]\w*[a-z]\w*", span.split(".")[-1])}


def missing_files(names: set[str], root: Path) -> list[str]:
    """The names that are no ``*.py`` file under ``root`` (matched on whole trailing path
    components: ``records.py``, ``data/records.py``)."""
    files = [p.relative_to(root).as_posix() for p in root.rglob("*.py")]
    return sorted(name for name in names
                  if not any(f == name or f.endswith("/" + name) for f in files))


def undefined(names: set[str], source: str) -> list[str]:
    return sorted(name for name in names
                  if not re.search(rf"^\s*(def|class) {re.escape(name)}\b", source, re.M))


def test_checkers_catch_a_made_up_name(tmp_path):
    (tmp_path / "pkg" / "data").mkdir(parents=True)
    (tmp_path / "pkg" / "data" / "records.py").write_text("def load_split():\n    pass\n")
    text = ("see `data/records.py`, `data/protocols.py`, `load_split(fmt)`, `super().x()` and "
            "`load_all(x)`\n```\nnot_checked(x)\n```")
    assert missing_files(mentioned_files(text), tmp_path) == ["data/protocols.py"]
    source = (tmp_path / "pkg" / "data" / "records.py").read_text()
    assert mentioned_calls(text) == {"load_split", "x", "load_all"}
    assert mentioned_classes("`SceneRecord` and `data.Missing`, not `ImageNet-normalised`") == {
        "SceneRecord", "Missing"}
    assert undefined(mentioned_calls(text), source) == ["load_all", "x"]


def test_every_file_the_doc_names_exists():
    text = DOC.read_text(encoding="utf-8")
    names = mentioned_files(text)
    assert "methods/context.py" in text and names
    assert missing_files(names, REPOSITORY) == []


def test_every_call_the_doc_names_is_defined():
    text = DOC.read_text(encoding="utf-8")
    source = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    names = mentioned_calls(text)
    assert {"build_model", "method_feature_extractors"} <= names
    assert undefined(names, source) == []


def test_every_class_the_doc_names_is_defined():
    text = DOC.read_text(encoding="utf-8")
    source = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    names = mentioned_classes(text)
    assert {"MethodContext", "SceneRecord"} <= names
    assert undefined(names, source) == []
