"""Dataset records and readers. ``load_split`` / ``load_train_identities`` / ``slot_offsets``
(splits.py), ``load_cuhk_protocol`` (cuhk_sysu.py), ``check_dataset`` (check.py),
``load_person_masks`` (masks.py); writers of the on-disk formats in writers.py."""

from personsearch.data.check import CheckReport, check_dataset
from personsearch.data.cuhk_sysu import CuhkQuery, load_cuhk_protocol
from personsearch.data.masks import load_person_masks
from personsearch.data.records import UNLABELED, SceneRecord
from personsearch.data.splits import load_split, load_train_identities, slot_offsets

__all__ = ["SceneRecord", "UNLABELED", "load_split", "load_train_identities", "slot_offsets",
           "CuhkQuery", "load_cuhk_protocol", "check_dataset", "CheckReport",
           "load_person_masks"]
