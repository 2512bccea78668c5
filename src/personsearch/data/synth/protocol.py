"""Query / gallery protocols of the synthetic test split, built the way the real datasets
build them, from the scene plan.

PRW: a share of the test identities (450 of 544 in PRW) get queries, one per camera the
identity appears in (PRW: 2,057 queries of 450 ids); the query box is that camera's
best-visible, then tallest, appearance. The query frame stays a test (gallery) frame, and every
query identity appears in at least one other test frame.

CUHK-SYSU: one query per test identity (its best-visible, then tallest box); TestG{N} galleries
come from :func:`personsearch.data.writers.build_cuhk_protocol`: all positives first, then random
negatives up to N images, never the query image. When the synthetic pool has fewer than N other
images the gallery holds all of them (``allow_smaller``): a small pool makes TestG500..4000
identical to "every other pool image".
"""

from __future__ import annotations

import numpy as np

from .plan import FramePlan, ScenePlan


def _appearances(test_frames: list[FramePlan]) -> dict[int, list[tuple[int, int]]]:
    """Labeled test identity -> [(test frame position, box index)]."""
    found: dict[int, list[tuple[int, int]]] = {}
    for position, frame in enumerate(test_frames):
        for box_index, person in enumerate(frame.persons):
            if person.labeled:
                found.setdefault(person.true_id, []).append((position, box_index))
    return found


def _best(test_frames, candidates):
    def key(item):
        person = test_frames[item[0]].persons[item[1]]
        return (-person.visible, -person.height, item[0], item[1])

    return min(candidates, key=key)


def prw_queries(plan: ScenePlan) -> list[tuple[int, int]]:
    """(test frame position, box index) of each PRW query, in query_info.txt order."""
    rng = np.random.default_rng([plan.settings.seed, 8])
    test_frames = plan.split_frames("test")
    found = _appearances(test_frames)
    eligible = sorted(pid for pid, hits in found.items() if len({h[0] for h in hits}) >= 2)
    wanted = max(1, int(round(plan.settings.query_id_fraction * len(found))))
    chosen = sorted(rng.choice(eligible, size=min(wanted, len(eligible)), replace=False).tolist())
    queries = []
    for pid in chosen:
        by_camera: dict[int, list] = {}
        for hit in found[pid]:
            by_camera.setdefault(test_frames[hit[0]].camera, []).append(hit)
        for camera in sorted(by_camera):
            queries.append(_best(test_frames, by_camera[camera]))
    return queries


def cuhk_queries(plan: ScenePlan) -> list[tuple[int, int]]:
    """(test image position, box index) of each CUHK-SYSU query: one per test identity that
    appears in at least two pool images."""
    test_frames = plan.split_frames("test")
    found = _appearances(test_frames)
    return [_best(test_frames, found[pid]) for pid in sorted(found)
            if len({hit[0] for hit in found[pid]}) >= 2]
