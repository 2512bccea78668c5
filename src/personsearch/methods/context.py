"""What a method receives from the run besides its own parameters: the :class:`MethodContext`
handed to ``Method.setup`` / ``Method.restore`` (built by the train CLI or a test, passed on by
the trainer). Everything a method needs from outside arrives here, explicitly; nothing is set on
the method from outside.

Shape glossary
--------------
N   training GT boxes = memory slots, in slot order (``data.splits.slot_offsets``)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from personsearch.comm import DistContext
from personsearch.data.records import SceneRecord


@dataclass(frozen=True)
class ExtractionSizes:
    """Test-pipeline resize used to extract memory features (the 1500×900 test pipeline of the
    reference code, docs/methods.md); the train CLI takes it from the config's eval section."""

    min_size: int = 900
    max_size: int = 1500


@dataclass(frozen=True)
class MethodContext:
    """The run as a method sees it.

    train_records     the training split (one memory slot per GT box, in record then box order)
    device            where the model and every state tensor of the method live
    dist              the process group (default: a single process)
    extraction_sizes  test resize for the memory initialisation pass
    masks_root        dataset folder whose ``masks/`` hold person masks, or None when the run
                      uses none (``data.masks`` off)
    slot_true_ids     [N] int64 true identity per slot (-1 unlabeled): given only to methods
                      with ``supervised = True`` (SeqNet); weakly supervised methods get None
    progress          show progress bars (main process only)
    """

    train_records: Sequence[SceneRecord]
    device: torch.device = torch.device("cpu")
    dist: DistContext = field(default_factory=DistContext)  # one process
    extraction_sizes: ExtractionSizes = ExtractionSizes()
    masks_root: str | None = None
    slot_true_ids: np.ndarray | None = None
    progress: bool = True

    @property
    def show_progress(self) -> bool:
        """Progress bars on: asked for, and this is the main process."""
        return self.progress and self.dist.is_main
