"""Suite-wide settings: the annotation parse cache (personsearch.data.parse_cache) writes into a
folder of this test session, never into the user's ~/.cache; subprocesses inherit it."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _annotation_cache_in_session_folder(tmp_path_factory: pytest.TempPathFactory):
    previous = os.environ.get("PERSONSEARCH_CACHE_DIR")
    os.environ["PERSONSEARCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("parse_cache"))
    yield
    if previous is None:
        os.environ.pop("PERSONSEARCH_CACHE_DIR", None)
    else:
        os.environ["PERSONSEARCH_CACHE_DIR"] = previous
