import importlib

import pytest
import torch

from personsearch.ops import batched_nms, nms

# the package re-exports the function `nms`, which shadows the submodule attribute
nms_impl = importlib.import_module("personsearch.ops.nms")


@pytest.fixture(autouse=True)
def pure_ops(monkeypatch):
    monkeypatch.setenv("PERSONSEARCH_PURE_OPS", "1")


def naive_nms(boxes, scores, thr, idxs=None):
    """Reference: visit in descending score (ties by index), suppress IoU > thr."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    b = boxes.tolist()
    suppressed = set()
    keep = []
    for pos, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if idxs is not None and int(idxs[i]) != int(idxs[j]):
                continue
            xx1, yy1 = max(b[i][0], b[j][0]), max(b[i][1], b[j][1])
            xx2, yy2 = min(b[i][2], b[j][2]), min(b[i][3], b[j][3])
            inter = max(0.0, xx2 - xx1) * max(0.0, yy2 - yy1)
            ai = (b[i][2] - b[i][0]) * (b[i][3] - b[i][1])
            aj = (b[j][2] - b[j][0]) * (b[j][3] - b[j][1])
            union = ai + aj - inter
            if union > 0 and inter / union > thr:
                suppressed.add(j)
    return keep


def random_boxes(n, seed, tie_levels=None):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    boxes = torch.cat([xy, xy + wh], 1).double()
    if tie_levels:
        scores = torch.randint(0, tie_levels, (n,), generator=g).double() / tie_levels
    else:
        scores = torch.rand(n, generator=g).double()
    return boxes, scores


def test_hand_example():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box3 (0.95) kept; box0 IoU 90/100 = 0.9 > 0.5 suppressed; box1 vs box3: inter 9*8=72, union 90+100-72
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [3, 2]
    assert nms(boxes, scores, 0.95).tolist() == [3, 0, 1, 2]


def test_threshold_is_strict():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]])  # IoU = 1/3
    scores = torch.tensor([0.5, 0.4])
    assert nms(boxes, scores, 1.0 / 3.0 + 1e-6).tolist() == [0, 1]
    assert nms(boxes, scores, 0.3).tolist() == [0]


@pytest.mark.parametrize("seed,n,thr,ties", [(0, 300, 0.5, None), (1, 700, 0.7, 5), (2, 1200, 0.3, 3), (3, 50, 0.0, 2)])
def test_matches_naive_reference_with_ties(monkeypatch, seed, n, thr, ties):
    monkeypatch.setattr(nms_impl, "_PAIR_CHUNK", 64)  # several pair chunks even for small inputs
    boxes, scores = random_boxes(n, seed, ties)
    keep = nms(boxes, scores, thr)
    assert keep.dtype == torch.int64
    assert keep.tolist() == naive_nms(boxes, scores, thr)


def test_identical_boxes_and_scores_keep_lowest_index():
    boxes = torch.tensor([[0.0, 0, 5, 5]] * 4)
    scores = torch.tensor([0.5, 0.7, 0.7, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1]


def test_empty():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).tolist() == []


@pytest.mark.parametrize("num_categories", [3, 40])  # per-category loop and single masked pass
def test_batched_nms_matches_naive(monkeypatch, num_categories):
    monkeypatch.setattr(nms_impl, "_PAIR_CHUNK", 64)
    boxes, scores = random_boxes(600, 7, tie_levels=4)
    idxs = torch.randint(0, num_categories, (600,), generator=torch.Generator().manual_seed(3))
    keep = batched_nms(boxes, scores, idxs, 0.5)
    assert keep.tolist() == naive_nms(boxes, scores, 0.5, idxs)


def test_batched_nms_other_category_not_suppressed():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    idxs = torch.tensor([0, 1, 0])
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == [0, 1]


def test_long_suppression_chain_inside_one_block():
    # a row of boxes each overlapping the next by more than the threshold: kept = every other box
    n = 40
    x = torch.arange(n, dtype=torch.float64) * 2.0
    boxes = torch.stack([x, torch.zeros(n), x + 4.0, torch.ones(n) * 4], 1)
    scores = torch.linspace(1.0, 0.1, n, dtype=torch.float64)
    keep = nms(boxes, scores, 0.3)  # IoU of neighbours = 2/6 = 0.333 > 0.3
    assert keep.tolist() == list(range(0, n, 2))
    assert keep.tolist() == naive_nms(boxes, scores, 0.3)


def test_bad_shapes():
    with pytest.raises(ValueError, match="scores"):
        nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


def test_env_var_forces_pure_ops_everywhere(monkeypatch):
    from personsearch.ops import _torchvision

    monkeypatch.setenv(_torchvision.PURE_OPS_ENV, "1")
    assert _torchvision.compiled_ops() is None
    monkeypatch.delenv(_torchvision.PURE_OPS_ENV)
    # without the env var: the compiled ops when they load, else None with a reason
    assert (_torchvision.compiled_ops() is None) == (not _torchvision.torchvision_ops_available())
    if not _torchvision.torchvision_ops_available():
        assert _torchvision.unavailable_reason()


def test_clustered_rpn_like_boxes_match_naive(monkeypatch):
    # many heavily overlapping proposals around a few objects (long suppression chains)
    monkeypatch.setattr(nms_impl, "_PAIR_CHUNK", 256)
    g = torch.Generator().manual_seed(11)
    centres = torch.rand(4, 2, generator=g) * 300
    which = torch.randint(0, 4, (400,), generator=g)
    centre = centres[which] + torch.randn(400, 2, generator=g) * 6
    size = 40 * torch.exp(torch.randn(400, 2, generator=g) * 0.1)
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
    scores = torch.rand(400, generator=g)
    for thr in (0.5, 0.7, 0.9):
        assert nms(boxes, scores, thr).tolist() == naive_nms(boxes, scores, thr)


def test_pair_just_above_threshold_at_pruning_bound():
    # same heights, shifted in x: IoU = 7 / 13 = 0.5385 is the closest a pair gets to ow / w = 0.7
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 7.0 / 13.0 - 1e-6).tolist() == [0]
    assert nms(boxes, scores, 7.0 / 13.0 + 1e-6).tolist() == [0, 1]
    # a narrow box inside a wide one: IoU = 1/10 with x-overlap equal to the narrow width
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 5.0, 10.0]])
    assert nms(boxes, scores, 0.099).tolist() == [0]
    assert nms(boxes, scores, 0.101).tolist() == [0, 1]


def test_negative_threshold_suppresses_disjoint_boxes_too():
    boxes, scores = random_boxes(60, 5)
    assert nms(boxes, scores, -0.1).tolist() == naive_nms(boxes, scores, -0.1)


def _heavy_overlap_boxes(n, seed):
    """Near-identical big boxes (an untrained RPN clipped to the image) plus a few small ones."""
    g = torch.Generator().manual_seed(seed)
    big = torch.tensor([[0.0, 0.0, 300.0, 200.0]]) + (torch.rand(n, 4, generator=g) - 0.5) * 30
    xy = torch.rand(n // 4, 2, generator=g) * 250
    small = torch.cat([xy, xy + torch.rand(n // 4, 2, generator=g) * 20 + 2], 1)
    boxes = torch.cat([big, small]).double()
    return boxes, torch.rand(boxes.shape[0], generator=g).double()


@pytest.mark.parametrize("greedy_block", [1, 8, 256])
def test_greedy_blocks_then_graph_match_naive(monkeypatch, greedy_block):
    # heavy overlap: the greedy blocks remove most boxes, then the pair graph takes the rest
    monkeypatch.setattr(nms_impl, "_GREEDY_BLOCK", greedy_block)
    monkeypatch.setattr(nms_impl, "_PAIR_CHUNK", 64)
    boxes, scores = _heavy_overlap_boxes(400, 2)
    for thr in (0.3, 0.7):
        assert nms(boxes, scores, thr).tolist() == naive_nms(boxes, scores, thr)
    sparse_boxes, sparse_scores = random_boxes(300, 4, tie_levels=3)  # blocks stop early: graph
    assert nms(sparse_boxes, sparse_scores, 0.5).tolist() == naive_nms(sparse_boxes, sparse_scores, 0.5)
    idxs = torch.randint(0, 40, (boxes.shape[0],), generator=torch.Generator().manual_seed(5))
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == naive_nms(boxes, scores, 0.5, idxs)


def test_heavy_overlap_does_not_build_the_quadratic_pair_graph(monkeypatch):
    # 3,000 near-identical boxes: one is kept; the pair graph would hold ~4.5M edges
    seen = []
    graph = nms_impl._graph_nms
    monkeypatch.setattr(nms_impl, "_graph_nms", lambda b, t, c: seen.append(b.shape[0]) or graph(b, t, c))
    boxes, scores = _heavy_overlap_boxes(3000, 3)
    keep = nms(boxes, scores, 0.7)
    assert max(seen) <= nms_impl._GREEDY_BLOCK + 750  # the blocks, then the small boxes' remainder
    assert keep.tolist() == naive_nms(boxes, scores, 0.7)


def test_dense_boxes_behind_distinct_top_boxes_still_skip_the_quadratic_graph(monkeypatch):
    # the first block (300 small, distinct, top-scoring boxes) removes nothing; the near-identical
    # covering boxes behind it must still be settled by greedy blocks, not by the pair graph
    monkeypatch.setattr(nms_impl, "_DENSE_EDGES", 20_000)
    seen = []
    graph = nms_impl._graph_nms
    monkeypatch.setattr(nms_impl, "_graph_nms", lambda b, t, c: seen.append(b.shape[0]) or graph(b, t, c))
    g = torch.Generator().manual_seed(8)
    grid = torch.stack(torch.meshgrid(torch.arange(20.0), torch.arange(15.0), indexing="ij"), -1).reshape(-1, 2) * 20
    small = torch.cat([grid, grid + 10], 1)  # 300 disjoint boxes
    covering = torch.tensor([[0.0, 0.0, 400.0, 300.0]]) + (torch.rand(800, 4, generator=g) - 0.5) * 20
    boxes = torch.cat([small, covering]).double()
    scores = torch.cat([0.9 + 0.1 * torch.rand(300, generator=g), 0.9 * torch.rand(800, generator=g)]).double()
    keep = nms(boxes, scores, 0.7)
    assert max(seen) <= nms_impl._GREEDY_BLOCK  # blocks only: the 800 covering boxes never form a graph
    assert keep.tolist() == naive_nms(boxes, scores, 0.7)
    assert not nms_impl._dense_overlap(small.double(), None, 0.7)
    assert nms_impl._dense_overlap(covering.double(), None, 0.7)
