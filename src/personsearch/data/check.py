"""Dataset problems: the one place where the readers report what is wrong with the files, and
``check_dataset`` which runs the same readers in *collect* mode.

Every reader takes a :class:`ProblemLog`. In strict mode (what ``load_split`` uses) a fatal
problem (``log.error``) raises :class:`~personsearch.errors.DatasetError` at once and a
non-fatal one (``log.warn``: something the reference loaders tolerate, e.g. a zero-size
CUHK-SYSU box that SeqNet drops) is ignored. In collect mode (``check_dataset``) both are
recorded and the reader carries on with the next entry, so one run lists every problem. There is
no second parser for checking: ``check_dataset`` only adds the cross-record checks (box inside
the image, query person present in the gallery, duplicate names across splits).

The module also holds the small file-level helpers the readers share (MAT loading, MATLAB
string extraction, image-size reading) so that every unreadable file is reported the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personsearch.errors import DatasetError


@dataclass(frozen=True)
class Problem:
    """One problem: the file, where in it (entry / box index, or ``None``), what is wrong and
    whether the readers refuse the dataset because of it (``fatal``)."""

    path: str
    problem: str
    fatal: bool = True

    def __str__(self) -> str:
        kind = "error" if self.fatal else "warning"
        return f"{kind}: {self.path}: {self.problem}"


class ProblemLog:
    """Sink for problems. ``collect=False``: ``error`` raises DatasetError, ``warn`` is
    ignored. ``collect=True``: both are appended to ``problems``."""

    def __init__(self, collect: bool = False) -> None:
        self.collect = collect
        self.problems: list[Problem] = []
        self._seen: set[Problem] = set()

    def _add(self, problem: Problem) -> None:
        if problem not in self._seen:  # a file read by two splits reports its problems once
            self._seen.add(problem)
            self.problems.append(problem)

    def error(self, path: str | Path, problem: str) -> None:
        if not self.collect:
            raise DatasetError(path, problem)
        self._add(Problem(str(path), problem, fatal=True))

    def warn(self, path: str | Path, problem: str) -> None:
        if self.collect:
            self._add(Problem(str(path), problem, fatal=False))


class Malformed(Exception):
    """Raised inside a reader when one entry of a file does not have the expected structure;
    caught by the reader, which reports it with the file and the entry index."""


# ---------------------------------------------------------------------------------------------
# shared file helpers


def load_mat(path: str | Path, log: ProblemLog) -> dict[str, Any] | None:
    """``scipy.io.loadmat`` with every failure reported as a problem of ``path`` (None then)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        log.error(path, "file is missing")
        return None
    try:
        return scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises many types for corrupt files
        log.error(path, f"unreadable MAT file ({type(error).__name__}: {error})")
        return None


def mat_var(contents: dict[str, Any], names: tuple[str, ...], path: Path, log: ProblemLog):
    """The first of ``names`` present in a loaded MAT file, or None (reported)."""
    for name in names:
        if name in contents:
            return contents[name]
    found = sorted(k for k in contents if not k.startswith("__"))
    log.error(path, f"no variable {' / '.join(repr(n) for n in names)} (found {found})")
    return None


def mat_str(value: Any) -> str:
    """A MATLAB char array as loaded by scipy (``array(['s1.jpg'])``, possibly nested in
    1-element cells) -> str."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise Malformed(f"expected one string, got an array of shape {value.shape}")
        value = value.reshape(-1)[0]
    if not isinstance(value, str):
        raise Malformed(f"expected a string, got {type(value).__name__}")
    return str(value)


def mat_cells(value: Any) -> list[Any]:
    """Elements of a MATLAB cell / struct array in MATLAB's linear order for 1-D arrays
    (1×N or N×1, the only shapes the datasets use)."""
    array = np.asarray(value)
    if array.ndim > 2 or (array.ndim == 2 and min(array.shape) > 1):
        raise Malformed(f"expected a 1-D cell/struct array, got shape {array.shape}")
    return list(array.reshape(-1))


def read_mat_cells(path: Path, names: tuple[str, ...], log: ProblemLog) -> list[Any] | None:
    """The entries of the first of ``names`` in the MAT file ``path`` (``mat_cells``), or None
    after logging why not (file unreadable, variable missing, not a cell/struct array)."""
    contents = load_mat(path, log)
    value = None if contents is None else mat_var(contents, names, path, log)
    if value is None:
        return None
    try:
        return mat_cells(value)
    except Malformed as error:
        log.error(path, f"variable {names[0]!r}: {error}")
        return None


def mat_box(value: Any) -> np.ndarray | None:
    """A MATLAB 1×4 box -> float64 [4]; an empty array -> None."""
    array = np.asarray(value)
    if array.size == 0:
        return None
    if array.size != 4 or not np.issubdtype(array.dtype, np.number):
        raise Malformed(f"expected a 1x4 box, got shape {array.shape} dtype {array.dtype}")
    return array.astype(np.float64).reshape(4)


def struct_field(record: Any, name: str) -> Any:
    """Field ``name`` of one MATLAB struct record (np.void) or 1×1 struct array."""
    if isinstance(record, np.ndarray):
        if record.size != 1:
            raise Malformed(f"expected a 1x1 struct, got shape {record.shape}")
        record = record.reshape(-1)[0]
    names = getattr(getattr(record, "dtype", None), "names", None)
    if not names or name not in names:
        raise Malformed(f"expected a struct with field {name!r}, got fields {names}")
    return record[name]


_SIZE_CACHE: dict[tuple[str, int, int], tuple[int, int]] = {}


def image_size(path: str | Path, log: ProblemLog) -> tuple[int, int]:
    """(width, height) from the image header (PIL, lazy: no decoding), after the EXIF
    orientation like ``transforms.load_image``. Cached by path, size and modification time. A missing or unreadable image is reported; (0, 0) then."""
    from PIL import Image

    from personsearch.data.transforms import oriented_size

    path = str(path)
    try:
        stat = os.stat(path)
    except OSError:
        log.error(path, "image file is missing")
        return 0, 0
    key = (path, stat.st_mtime_ns, stat.st_size)
    size = _SIZE_CACHE.get(key)
    if size is None:
        try:
            with Image.open(path) as image:
                size = oriented_size(image)  # as load_image returns it (EXIF orientation)
        except Exception as error:
            log.error(path, f"unreadable image ({type(error).__name__}: {error})")
            return 0, 0
        _SIZE_CACHE[key] = size
    return size


def report_duplicates(names: list[str], path: str | Path, what: str, log: ProblemLog) -> None:
    """Fatal problem for every repeated name in ``names`` (entry indices named)."""
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            log.error(path, f"{what} {index}: duplicate image name {name!r} "
                            f"(first at {what} {first[name]})")
        else:
            first[name] = index


# ---------------------------------------------------------------------------------------------
# check_dataset


@dataclass
class SplitCounts:
    images: int = 0
    boxes: int = 0
    labeled_boxes: int = 0
    identities: int = 0
    queries: int = 0


@dataclass
class MaskCounts:
    """Person masks of the training images (``check_dataset(..., masks=True)``)."""

    images: int = 0
    valid: int = 0
    missing: int = 0
    invalid: int = 0


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`: counts per split ("train", "gallery", "query") and every
    problem found. ``ok`` is True only when there is no problem at all."""

    fmt: str
    root: str
    counts: dict[str, SplitCounts] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    masks: MaskCounts | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        lines = [f"dataset {self.root} (format {self.fmt})",
                 f"{'split':<8} {'images':>8} {'boxes':>8} {'labeled':>8} {'ids':>7} "
                 f"{'queries':>8}"]
        for split, counts in self.counts.items():
            lines.append(f"{split:<8} {counts.images:>8} {counts.boxes:>8} "
                         f"{counts.labeled_boxes:>8} {counts.identities:>7} {counts.queries:>8}")
        if self.masks is not None:
            lines.append(f"masks: {self.masks.valid} of {self.masks.images} train images have a "
                         f"valid mask ({self.masks.missing} missing, {self.masks.invalid} "
                         f"invalid)")
        errors = sum(p.fatal for p in self.problems)
        lines.append(f"{len(self.problems)} problem(s): {errors} error(s), "
                     f"{len(self.problems) - errors} warning(s)")
        lines.extend(str(problem) for problem in self.problems)
        return "\n".join(lines)


def _count(records, ids_per_record) -> SplitCounts:
    ids = np.concatenate([np.asarray(i, np.int64) for i in ids_per_record]) if records \
        else np.zeros(0, np.int64)
    return SplitCounts(images=len(records), boxes=int(sum(r.num_boxes for r in records)),
                       labeled_boxes=int((ids >= 0).sum()),
                       identities=int(np.unique(ids[ids >= 0]).size))


def check_boxes(records, split: str, log: ProblemLog) -> None:
    """Zero/negative-size boxes and boxes outside the image (records whose image size could not
    be read are skipped; that problem is already reported)."""
    for record in records:
        boxes = record.boxes
        if boxes.size == 0:
            continue
        degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        for k in np.flatnonzero(degenerate):
            log.warn(record.image_path, f"{split} box {k}: zero or negative size "
                                        f"{boxes[k].tolist()}")
        if record.width <= 0 or record.height <= 0:
            continue
        outside = ((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > record.width)
                   | (boxes[:, 3] > record.height))
        for k in np.flatnonzero(outside):
            log.warn(record.image_path, f"{split} box {k}: {boxes[k].tolist()} outside the "
                                        f"{record.width}x{record.height} image")


def check_queries_in_gallery(queries, gallery, query_file: str, log: ProblemLog) -> None:
    """Every query's person must appear in some gallery image other than the query image."""
    images_of_id: dict[int, set[str]] = {}
    for record in gallery:
        for pid in np.unique(record.person_ids[record.person_ids >= 0]).tolist():
            images_of_id.setdefault(pid, set()).add(record.image_name)
    for index, query in enumerate(queries):
        pid = int(query.person_ids[0])
        if not (images_of_id.get(pid, set()) - {query.image_name}):
            log.warn(query_file, f"query {index}: person {pid} ({query.image_name}) never "
                                 f"appears in the gallery")


MISSING_MASKS_LISTED = 5


def check_masks(records, root: str | Path, log: ProblemLog) -> MaskCounts:
    """Person masks (``<root>/masks/<stem>.png``) of the training records: every invalid file is
    an error; the images without one are one error naming the first few (SSL's presets stop at
    the first image without a mask)."""
    from personsearch.data.masks import mask_path
    from personsearch.data.masks_generate import mask_state

    counts = MaskCounts(images=len(records))
    missing = []
    for record in records:
        state = mask_state(root, record)
        if state == "valid":
            counts.valid += 1
        elif state == "missing":
            missing.append(record.image_name)
        else:
            counts.invalid += 1
            log.error(mask_path(root, record), state[len("invalid: "):])
    counts.missing = len(missing)
    if missing:
        shown = ", ".join(missing[:MISSING_MASKS_LISTED])
        more = f" and {len(missing) - MISSING_MASKS_LISTED} more" \
            if len(missing) > MISSING_MASKS_LISTED else ""
        log.error(Path(root) / "masks", f"{len(missing)} train images have no mask ({shown}"
                                        f"{more}); personsearch data masks writes them")
    return counts


def check_dataset(fmt: str, root: str | Path, masks: bool = False) -> CheckReport:
    """Read every split of the dataset at ``root`` collecting all problems instead of stopping
    at the first. See the module docstring of :mod:`personsearch.data.splits` for formats.
    ``masks``: also check the person masks of the training images (:func:`check_masks`)."""
    from personsearch.data import splits

    log = ProblemLog(collect=True)
    report = CheckReport(fmt=fmt, root=str(root))
    parsed = splits.parse_dataset(fmt, Path(root), log)
    train, train_ids = parsed["train"], parsed["train_ids"]
    gallery, queries = parsed["gallery"], parsed["query"]
    report.counts["train"] = _count(train, train_ids)
    report.counts["gallery"] = _count(gallery, [r.person_ids for r in gallery])
    report.counts["query"] = _count(queries, [r.person_ids for r in queries])
    report.counts["query"].queries = len(queries)
    check_boxes(train, "train", log)
    check_boxes(gallery, "gallery", log)
    check_boxes(queries, "query", log)
    check_queries_in_gallery(queries, gallery, parsed["query_file"], log)
    train_names = {r.image_name for r in train}
    for record in gallery:
        if record.image_name in train_names:
            log.warn(record.image_path, "image is in both the train and the gallery split")
    if masks:
        report.masks = check_masks(train, root, log)
    report.problems = log.problems
    return report
