"""The one annotation record for a scene image, shared by every reader, the synthetic generator,
the training pipeline and the evaluation.

Conventions
-----------
- ``boxes``: float32 [N, 4], ``x1, y1, x2, y2`` in original-image pixels (no +1 convention),
  exactly the values SeqNet's loaders produce (see docs/datasets.md for the per-format
  conversion, clipping order and int truncation).
- ``person_ids``: int64 [N]; a person identity >= 0, or ``-1`` (UNLABELED) for a person without
  an identity. Readers map each format's marker (PRW -2, SeqNet 5555, COCO -1/-2) to -1.
  For the *train* split returned by :func:`personsearch.data.load_split` every id is -1 by
  construction: weakly supervised training cannot see identities. Diagnostics get them through
  :func:`personsearch.data.load_train_identities`.
- ``camera_id``: int, 0 where the dataset has none (CUHK-SYSU).
- ``image_index``: position of the record in its split (0..len(split)-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from personsearch.labels import UNLABELED  # noqa: F401  (re-exported: data.UNLABELED)


@dataclass(frozen=True, eq=False)
class SceneRecord:
    """Annotation of one scene image.

    Attributes:
        image_path: absolute path of the image file.
        image_name: file name as the dataset names it (e.g. ``c1s1_000151.jpg``, ``s15535.jpg``).
        width, height: image size in pixels.
        boxes: float32 [N, 4] x1, y1, x2, y2 in original pixels.
        person_ids: int64 [N], -1 for an unlabeled person.
        camera_id: camera index, 0 where the dataset has none.
        image_index: index of this record in its split.
    """

    image_path: str
    image_name: str
    width: int
    height: int
    boxes: np.ndarray = field(repr=False)
    person_ids: np.ndarray = field(repr=False)
    camera_id: int = 0
    image_index: int = 0

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        pids = np.asarray(self.person_ids, dtype=np.int64).reshape(-1)
        if len(boxes) != len(pids):
            raise ValueError(
                f"{self.image_name}: {len(boxes)} boxes but {len(pids)} person ids"
            )
        boxes.setflags(write=False)
        pids.setflags(write=False)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "person_ids", pids)

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])
