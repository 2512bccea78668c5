"""The repository documents itself: no tracked file points at files outside the repository (the
specification and paper texts the project was written from live elsewhere and are not shipped;
they were cited by their page names without a folder),
and every `docs/<page>.md §N.M` a file cites names a section that exists on that page.

The one allowed outside path is the CI layout default of ``PERSONSEARCH_SEQNET_SOURCE`` in the
Makefile (where SeqNet's source sits on the CI machines; docs/reference_parity.md).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Spellings of the folder beside the repository that held the specification, the paper texts
#: and SeqNet's source (built from parts so that this file does not mention them itself).
OUTSIDE_PATHS = tuple("".join(parts) for parts in (("..", "/shared"), ("shared", "/spec"),
                                                   ("shared", "/seeds"), ("shared", "/reference")))
#: A page name cited without its docs/ folder: how the outside specification files were cited.
BARE_PAGE = re.compile(r"(?<![\w/.-])(?:methods|datasets|eval)\.md")
#: (file, the start of the one line there that may name an outside path).
ALLOWED_LINES = {("Makefile", "PERSONSEARCH_SEQNET_SOURCE ?=")}

DOC_PAGES = ("methods", "datasets", "evaluation")
CITATION = re.compile(r"docs/(" + "|".join(DOC_PAGES) + r")\.md`?((?:\s*[,/;]?\s*(?:and\s+)?"
                      r"§\d+(?:\.\d+)?(?:\s*[-–]\s*§?\d+(?:\.\d+)?)?)+)")
SECTION_NUMBER = re.compile(r"\d+(?:\.\d+)?")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", re.MULTILINE)


def outside_mentions(name: str, text: str) -> list[str]:
    """``"file:line: text"`` for each line of ``text`` naming an outside path (allowed lines
    excepted)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if any(path in line for path in OUTSIDE_PATHS) or BARE_PAGE.search(line):
            if any(name == allowed_file and line.lstrip().startswith(start)
                   for allowed_file, start in ALLOWED_LINES):
                continue
            found.append(f"{name}:{number}: {line.strip()}")
    return found


def cited_sections(text: str) -> list[tuple[str, str]]:
    """``(page, section number)`` for every ``docs/<page>.md §...`` citation in ``text``
    (lists such as ``§1.6, §2.1`` and ranges such as ``§0-2`` give each number)."""
    return [(page, number) for page, sections in CITATION.findall(text)
            for number in SECTION_NUMBER.findall(sections)]


def section_numbers(page_text: str) -> set[str]:
    """The numbers of a page's ``##`` / ``###`` headings (``## 3. SSL`` -> ``3``)."""
    return set(HEADING.findall(page_text))


def _tracked_texts() -> dict[str, str]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout with git available ({error}); the check reads `git ls-files`")
    texts = {}
    for name in listed.stdout.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file():  # listed but removed in the working tree
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        texts[name] = data.decode("utf-8", errors="replace")
    return texts


def test_outside_mentions_finds_a_planted_one_and_allows_only_the_ci_line():
    planted = "see " + OUTSIDE_PATHS[1] + "/eval.md\nfine line\n"
    assert outside_mentions("src/x.py", planted) == [f"src/x.py:1: see {OUTSIDE_PATHS[1]}/eval.md"]
    ci_line = "PERSONSEARCH_SEQNET_SOURCE ?= $(abspath " + OUTSIDE_PATHS[3] + "/seqnet)\n"
    assert outside_mentions("Makefile", ci_line) == []
    assert len(outside_mentions("tests/other.py", ci_line)) == 1  # only the Makefile may say it
    methods_page, eval_page = "methods" + ".md", "eval" + ".md"  # spelled in parts: this file is checked too
    assert outside_mentions("a.py", f"({methods_page} §3.3)\n({eval_page})\n") == [
        f"a.py:1: ({methods_page} §3.3)", f"a.py:2: ({eval_page})"]
    assert outside_mentions("a.py", "(docs/methods.md §3.3) docs/evaluation.md\n") == []


def test_cited_sections_reads_lists_and_ranges():
    text = "(docs/methods.md §1.6, §2.1, §3.7) and `docs/evaluation.md` §0-2; docs/datasets.md §1.2 / §2.2"
    assert cited_sections(text) == [("methods", "1.6"), ("methods", "2.1"), ("methods", "3.7"),
                                    ("evaluation", "0"), ("evaluation", "2"),
                                    ("datasets", "1.2"), ("datasets", "2.2")]
    assert section_numbers("# T\n## 3. SSL\n### 3.5 Pseudo labels\n#### 9.9 deeper\n") == {"3", "3.5"}


def test_no_tracked_file_points_outside_the_repository():
    mentions = [m for name, text in _tracked_texts().items() for m in outside_mentions(name, text)]
    assert not mentions, "files outside the repository are cited (cite docs/ instead):\n" + "\n".join(mentions)


def test_every_cited_docs_section_exists():
    texts = _tracked_texts()
    sections = {page: section_numbers((REPO / "docs" / f"{page}.md").read_text()) for page in DOC_PAGES}
    missing = sorted({f"{name}: docs/{page}.md §{number}" for name, text in texts.items()
                      for page, number in cited_sections(text) if number not in sections[page]})
    assert not missing, "citations of sections that do not exist:\n" + "\n".join(missing)
