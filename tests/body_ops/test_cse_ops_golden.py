"""CSE ops (dp2.ops.cse) vs the original DP2: combine_cse_maskrcnn, transform_embedding,
cse_person_preprocess (functions/*)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.cse import (closest_vertices, combine_cse_maskrcnn, cse_person_preprocess, greedy_matches,
                         pairwise_mask_iou, transform_embedding, vertices_to_embedding)
from body_ops_fixtures import body_golden, _one_torch_thread  # noqa: F401 (pytest fixtures)


# Vertex argmins use DensePose's float32 formula, so they match exactly here; another BLAS may
# round the distances differently and flip a near-tie (golden min margin: 8.7e-9).
MAX_VERTEX_MISMATCHES = 5


@pytest.fixture(scope="module")
def combine_data(body_golden):
    return body_golden("functions/combine_cse_maskrcnn")


@pytest.fixture(scope="module")
def te_data(body_golden):
    return body_golden("functions/transform_embedding")


@pytest.fixture(scope="module")
def person_data(body_golden):
    return body_golden("functions/cse_person_preprocess")


def test_golden_combine_cse_maskrcnn(combine_data):
    arrays, sidecar = combine_data
    assert len(sidecar["cases"]) == 60
    n_matches = 0
    for case in sidecar["cases"]:
        k = case["index"]
        iou, matches, combined = combine_cse_maskrcnn(torch.from_numpy(arrays[f"maskrcnn_seg_{k}"]),
                                                      torch.from_numpy(arrays[f"cse_im_seg_{k}"]), 0.4)
        assert iou.dtype == torch.float32 and matches.dtype == torch.int64 and combined.dtype == torch.bool
        np.testing.assert_array_equal(iou.numpy(), arrays[f"iou_{k}"], err_msg=f"case {k}")  # float32, bit-exact
        np.testing.assert_array_equal(matches.numpy(), arrays[f"matches_{k}"].reshape(-1, 2), err_msg=f"case {k}")
        if f"combined_seg_{k}" in arrays:
            np.testing.assert_array_equal(combined.numpy(), arrays[f"combined_seg_{k}"], err_msg=f"case {k}")
        else:  # no Mask R-CNN or no CSE detection
            assert combined.shape == (0, case["H"], case["W"])
        n_matches += len(matches)
    assert n_matches == 60


def test_golden_matching_is_not_iou_sorted(combine_data):
    """Somewhere in the data a later row would have had a higher IoU for an already-taken column."""
    arrays, sidecar = combine_data
    found = False
    for case in sidecar["cases"]:
        k = case["index"]
        iou, matches = arrays[f"iou_{k}"], arrays[f"matches_{k}"].reshape(-1, 2)
        for i, j in matches.tolist():
            if (iou[i + 1:, j] > iou[i, j]).any():
                found = True
    assert found


@pytest.mark.parametrize("k", range(40))
def test_golden_transform_embedding(te_data, k):
    arrays, sidecar = te_data
    case = sidecar["cases"][k]
    E = torch.from_numpy(arrays[f"E_{k:03d}"])
    S = torch.from_numpy(arrays[f"S_{k:03d}"].astype(np.int64))
    new_E, E_mask = transform_embedding(E, S, case["exp_bbox"], case["E_bbox"], tuple(case["target"]))
    y0, y1, x0, x1 = case["inner_rect_y0y1x0x1"]
    assert new_E.shape == (E.shape[0], *case["target"]) and new_E.dtype == torch.float32
    np.testing.assert_allclose(new_E[:, y0:y1, x0:x1].numpy(), arrays[f"out_E_inner_{k:03d}"], rtol=0, atol=1e-6)
    outside = new_E.clone()
    outside[:, y0:y1, x0:x1] = 0
    assert not outside.any()
    assert E_mask.dtype == torch.bool
    np.testing.assert_array_equal(E_mask.numpy(), arrays[f"out_S_{k:03d}"])


def test_golden_transform_embedding_vertices(te_data):
    arrays, sidecar = te_data
    embed_map = torch.from_numpy(arrays["embed_map"])
    mismatches = pixels = cases = 0
    for case in sidecar["cases"]:
        k = case["index"]
        if f"out_vertices_{k:03d}" not in arrays:
            continue
        new_E, E_mask = transform_embedding(torch.from_numpy(arrays[f"E_{k:03d}"]),
                                            torch.from_numpy(arrays[f"S_{k:03d}"].astype(np.int64)),
                                            case["exp_bbox"], case["E_bbox"], tuple(case["target"]))
        vertices = closest_vertices(new_E, E_mask, embed_map)
        expected = arrays[f"out_vertices_{k:03d}"].astype(np.int64)
        assert vertices.dtype == torch.int64
        assert not vertices[~E_mask].any()
        mismatches += int((vertices.numpy() != expected).sum())
        pixels += int(E_mask.sum())
        cases += 1
    assert cases == 10 and pixels > 5000
    assert mismatches <= MAX_VERTEX_MISMATCHES, f"{mismatches} of {pixels} vertices differ"


@pytest.mark.parametrize("k", range(7))
def test_golden_cse_person_preprocess(person_data, k):
    arrays, sidecar = person_data
    T = torch.from_numpy
    _, matches, combined = combine_cse_maskrcnn(T(arrays[f"maskrcnn_seg_{k}"]), T(arrays[f"cse_im_seg_{k}"]), 0.4)
    np.testing.assert_array_equal(matches.numpy(), arrays[f"matches_{k}"])
    j = matches[:, 1]
    out = cse_person_preprocess(combined, T(arrays[f"cse_bbox_{k}"])[j], T(arrays[f"cse_E_{k}"])[j],
                                T(arrays[f"cse_S_{k}"].astype(np.int64))[j], T(arrays["embed_map"]))
    assert len(out.boxes) == sidecar["images"][k]["n_out"]
    for field, key in [("boxes", "out_boxes"), ("keep_mask", "out_mask"), ("maskrcnn_mask", "out_maskrcnn_mask"),
                       ("E_mask", "out_E_mask"), ("dilated_boxes", "out_dilated_boxes")]:
        got, expected = getattr(out, field).numpy(), arrays[f"{key}_{k}"]
        assert got.dtype == expected.dtype, field
        np.testing.assert_array_equal(got, expected, err_msg=field)
    assert out.vertices.dtype == torch.int64
    expected = arrays[f"out_vertices_{k}"].astype(np.int64)
    mismatches = int((out.vertices.numpy() != expected).sum())
    assert mismatches <= MAX_VERTEX_MISMATCHES, f"{mismatches} of {int(out.E_mask.sum())} vertices differ"


# ---------------------------------------------------------------- hand-made cases

def test_greedy_matches_row_major_not_best_pair():
    iou = torch.tensor([[0.45, 0.9, 0.0],
                        [0.95, 0.2, 0.0],
                        [0.0, 0.0, 0.39]])
    # row 0 takes column 0 (first >= 0.4), so row 1 (IoU 0.95 with column 0) stays unmatched.
    assert greedy_matches(iou, 0.4).tolist() == [[0, 0]]
    assert greedy_matches(iou, 0.39).tolist() == [[0, 0], [2, 2]]


def test_convention_threshold_is_inclusive():
    assert greedy_matches(torch.tensor([[0.4]], dtype=torch.float32), 0.4).tolist() == [[0, 0]]


@pytest.mark.parametrize("n, m", [(0, 0), (0, 2), (3, 0)])
def test_combine_with_no_detections(n, m):
    iou, matches, combined = combine_cse_maskrcnn(torch.zeros((n, 8, 6), dtype=torch.bool),
                                                  torch.zeros((m, 8, 6), dtype=torch.bool))
    assert iou.shape == (n, m) and matches.shape == (0, 2) and combined.shape == (0, 8, 6)


def test_pairwise_mask_iou_empty_masks_are_zero():
    a = torch.zeros((1, 4, 4), dtype=torch.bool)
    assert pairwise_mask_iou(a, a).tolist() == [[0.0]]


def test_transform_embedding_clips_a_box_outside_the_crop():
    E = torch.ones((2, 4, 4))
    S = torch.ones((4, 4), dtype=torch.int64)
    new_E, E_mask = transform_embedding(E, S, (0, 0, 20, 36), (-10, 0, 10, 36), (36, 20))  # left half outside
    assert E_mask[:, :10].all() and not E_mask[:, 10:].any()
    assert new_E.shape == (2, 36, 20)


@pytest.mark.parametrize("e_x0, col", [(5, 2), (7, 4), (9, 4)])  # 2.5 -> 2, 3.5 -> 4, 4.5 -> 4
def test_convention_inner_rectangle_rounds_half_to_even(e_x0, col):
    S = torch.ones((4, 4), dtype=torch.int64)
    _, E_mask = transform_embedding(torch.ones((1, 4, 4)), S, (0, 0, 40, 72), (e_x0, 0, 40, 72), (36, 20))
    assert E_mask[0].int().argmax().item() == col


def test_transform_embedding_mask_grows_with_threshold_above_zero():
    S = torch.zeros((8, 8), dtype=torch.int64)
    S[2:6, 2:6] = 1
    _, E_mask = transform_embedding(torch.zeros((1, 8, 8)), S, (0, 0, 16, 16), (0, 0, 16, 16), (16, 16))
    assert int(E_mask.sum()) > 64  # bilinear tails > 0 widen the 8 x 8 upscaled square


def test_closest_vertices_matches_float64_argmin_and_chunking():
    g = torch.Generator().manual_seed(0)
    embed_map = torch.nn.functional.normalize(torch.randn((50, 16), generator=g), dim=1)
    E = torch.randn((16, 12, 9), generator=g)
    E_mask = torch.rand((12, 9), generator=g) > 0.3
    v = closest_vertices(E, E_mask, embed_map)
    d = torch.cdist(E.permute(1, 2, 0).reshape(-1, 16).double(), embed_map.double())  # [108, 50]
    exact = d.argmin(1).reshape(12, 9) * E_mask
    assert torch.equal(v, exact)
    assert torch.equal(closest_vertices(E, E_mask, embed_map, chunk=7), v)
    assert not closest_vertices(E, torch.zeros_like(E_mask), embed_map).any()


def test_vertices_to_embedding_zero_outside_mask():
    embed_map = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    vertices = torch.tensor([[[3, 1], [0, 2]]])  # [1, 2, 2]
    mask = torch.tensor([[[True, True], [False, True]]])
    emb = vertices_to_embedding(vertices, embed_map, mask)
    assert emb.shape == (1, 3, 2, 2)
    assert emb[0, :, 0, 0].tolist() == [9.0, 10.0, 11.0] and emb[0, :, 1, 0].tolist() == [0.0, 0.0, 0.0]


def test_cse_person_preprocess_zero_persons():
    out = cse_person_preprocess(torch.zeros((0, 30, 20), dtype=torch.bool), torch.zeros((0, 4), dtype=torch.int64),
                                torch.zeros((0, 16, 112, 112)), torch.zeros((0, 112, 112), dtype=torch.int64),
                                torch.zeros((10, 16)))
    assert out.boxes.shape == (0, 4) and out.vertices.shape == (0, 1, 288, 160) and out.E_mask.dtype == torch.bool
