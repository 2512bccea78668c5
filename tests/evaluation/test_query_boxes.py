"""Query boxes eval cannot use are refused before any work, naming the image and the query
(issue 13: `data check` warned about them but `eval` used them silently)."""

import logging

import numpy as np
import pytest

from personsearch.data.records import SceneRecord
from personsearch.errors import DatasetError
from personsearch.evaluation.inference import check_query_boxes


def query(box, width=200, height=100, name="c1s1_000001.jpg"):
    return SceneRecord(f"/data/frames/{name}", name, width, height,
                       np.asarray([box], np.float32), np.array([3]), 1, 0)


def test_boxes_inside_pass_silently(caplog):
    with caplog.at_level(logging.WARNING):
        check_query_boxes([query([0, 0, 200, 100]), query([10, 20, 30, 90])])
    assert caplog.records == []


@pytest.mark.parametrize("box", [[10, 10, 10, 50], [10, 10, 50, 10], [40, 10, 20, 50]])
def test_zero_or_negative_size_is_refused(box):
    with pytest.raises(DatasetError, match=r"/data/frames/c1s1_000002.jpg: query 1: box .* zero "
                                           r"or negative size"):
        check_query_boxes([query([0, 0, 5, 5]), query(box, name="c1s1_000002.jpg")])


@pytest.mark.parametrize("box", [[200, 10, 230, 50], [-30, 10, 0, 50], [10, 100, 40, 150],
                                 [10, -50, 40, -1]])
def test_box_entirely_outside_is_refused(box):
    with pytest.raises(DatasetError, match=r"query 0: box .* entirely outside the 200x100 image"):
        check_query_boxes([query(box)])


def test_box_partly_outside_is_used_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING):
        check_query_boxes([query([0, 0, 20, 20]), query([190, 10, 230, 50]), query([-5, 0, 9, 9])])
    assert len(caplog.records) == 1
    assert "2 query boxes extend past their image (first: query 1" in caplog.records[0].getMessage()


def test_unknown_image_size_skips_the_outside_check():
    check_query_boxes([query([500, 500, 600, 700], width=0, height=0)])
