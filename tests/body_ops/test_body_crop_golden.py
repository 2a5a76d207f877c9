"""crop_persons, and the whole body chain on DP2's end-to-end body scene (end_to_end/e2e_body)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dp2.ops.body_crop import crop_persons
from dp2.ops.body_masks import preprocess_persons
from dp2.ops.cse import combine_cse_maskrcnn, cse_person_preprocess
from dp2.ops.face_body_dedup import faces_inside_bodies
from dp2.ops.face_crop import sort_by_area
from dp2.ops.paste import paste_crop
from body_ops_fixtures import body_golden, _one_torch_thread  # noqa: F401 (pytest fixtures)


T = torch.from_numpy
B1 = "b1_FB_cse_mask_face_t05"  # FB_cse_mask_face: det0 faces, det2 persons without CSE, det3 CSE persons
B3 = "b3_FB_cse_mt_t05"  # FB_cse: det0 CSE persons only


@pytest.fixture(scope="module")
def scene(body_golden):
    arrays, _ = body_golden("end_to_end/e2e_body")
    _, matches, combined = combine_cse_maskrcnn(T(arrays["maskrcnn_segmentation"]), T(arrays["cse_im_segmentation"]))
    j = matches[:, 1]
    embed_map = T(arrays["embed_map"])
    cse = cse_person_preprocess(combined, T(arrays["cse_bbox_XYXY"])[j], T(arrays["cse_instance_embedding"])[j],
                                T(arrays["cse_instance_segmentation"].astype(np.int64))[j], embed_map)
    unmatched = [i for i in range(len(arrays["maskrcnn_segmentation"])) if i not in matches[:, 0].tolist()]
    persons = preprocess_persons(T(arrays["maskrcnn_segmentation"])[unmatched])
    return arrays, matches, cse, persons, embed_map


def test_golden_scene_detections(scene):
    arrays, matches, cse, persons, _ = scene
    assert matches.tolist() == [[0, 0], [2, 1]]  # CSE det 2 matches nothing
    for run, det in ((B1, "det3"), (B3, "det0")):
        for field, key in (("boxes", "boxes"), ("keep_mask", "mask"), ("dilated_boxes", "dilated_boxes"),
                           ("E_mask", "E_mask")):
            np.testing.assert_array_equal(getattr(cse, field).numpy(), arrays[f"{run}_{det}_{key}"], err_msg=field)
        np.testing.assert_array_equal(cse.vertices.numpy(), arrays[f"{run}_{det}_vertices"].astype(np.int64))
    for field, key in (("boxes", "boxes"), ("keep_mask", "mask"), ("dilated_boxes", "dilated_boxes")):
        np.testing.assert_array_equal(getattr(persons, field).numpy(), arrays[f"{B1}_det2_{key}"], err_msg=field)


def test_golden_scene_face_dedup(scene):
    arrays, _, cse, persons, _ = scene
    faces = T(arrays["face_boxes"])
    removed = faces_inside_bodies(faces, torch.cat([cse.dilated_boxes, persons.dilated_boxes]))
    assert removed.tolist() == [True, False, False]
    kept = faces[~removed]
    np.testing.assert_array_equal(kept[sort_by_area(kept)].numpy(), arrays[f"{B1}_det0_face_boxes_sorted"])


def test_golden_scene_cse_crops_with_sequential_paste(scene):
    """FB_cse run: crop 0 from the input, paste DP2's recorded output, crop 1 from the result."""
    arrays, _, cse, _, embed_map = scene
    crops = crop_persons(T(arrays["input_image"]), cse.boxes, cse.keep_mask, cse.maskrcnn_mask, cse.vertices,
                         embed_map, cse.E_mask)
    assert crops.embedding.shape == (2, 16, 288, 160) and crops.embedding_mask.dtype == torch.float32
    np.testing.assert_array_equal(crops.images[0].numpy(), arrays[f"{B3}_call0_crop_img"][0])
    for i in range(2):
        np.testing.assert_array_equal(crops.keep_mask[i].numpy(), arrays[f"{B3}_call{i}_crop_mask"][0].astype(bool))
        np.testing.assert_array_equal(crops.embedding_mask[i].numpy(), arrays[f"{B3}_call{i}_crop_E_mask"][0])
    pasted = paste_crop(T(arrays["input_image"]), T(arrays[f"{B3}_call0_G_out_0_255"])[0], crops.keep_mask[0],
                        cse.boxes[0])
    second = crop_persons(pasted, cse.boxes[1:], cse.keep_mask[1:])
    np.testing.assert_array_equal(second.images[0].numpy(), arrays[f"{B3}_call1_crop_img"][0])


# ---------------------------------------------------------------- hand-made cases

def _keep(n, h=36, w=20):
    return torch.ones((n, 1, h, w), dtype=torch.bool)


def test_body_rule_nearest_when_smaller_in_both_dims():
    img = torch.arange(18 * 10, dtype=torch.uint8).reshape(1, 18, 10).repeat(3, 1, 1)
    crops = crop_persons(img, torch.tensor([[0, 0, 10, 18]]), _keep(1), target_hw=(36, 20))
    np.testing.assert_array_equal(crops.images[0, 0].numpy(), img[0].repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_body_rule_bicubic_when_one_side_is_large():
    img = torch.zeros((3, 40, 20), dtype=torch.uint8)
    img[:, 20:, :] = 200
    crops = crop_persons(img, torch.tensor([[0, 0, 20, 40]]), _keep(1), target_hw=(36, 20))  # 40 >= 36
    expected = torch.nn.functional.interpolate(img[None].float(), size=(36, 20), mode="bicubic", align_corners=False,
                                               antialias=True).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(crops.images, expected)
    assert any(0 < v < 200 for v in crops.images[0, 0, :, 5].tolist())  # not nearest


def test_crop_persons_zero_persons():
    crops = crop_persons(torch.zeros((3, 50, 40), dtype=torch.uint8), torch.zeros((0, 4), dtype=torch.int64),
                         torch.ones((0, 1, 288, 160), dtype=torch.bool))
    assert len(crops) == 0 and crops.images.shape == (0, 3, 288, 160) and crops.embedding is None


def test_crop_persons_embedding_is_embed_map_at_vertices_times_mask():
    embed_map = torch.randn((5, 4), generator=torch.Generator().manual_seed(0))
    vertices = torch.randint(0, 5, (1, 1, 36, 20), generator=torch.Generator().manual_seed(1))
    E_mask = torch.zeros((1, 1, 36, 20), dtype=torch.bool)
    E_mask[..., 5:30, 3:17] = True
    crops = crop_persons(torch.zeros((3, 36, 20), dtype=torch.uint8), torch.tensor([[0, 0, 20, 36]]), _keep(1),
                         ~_keep(1), vertices, embed_map, E_mask, target_hw=(36, 20))
    expected = embed_map[vertices[0, 0]].permute(2, 0, 1) * E_mask[0]
    assert torch.equal(crops.embedding[0], expected)
    assert torch.equal(crops.embedding_mask, E_mask.float()) and not crops.maskrcnn_mask.any()


def test_crop_persons_validates_inputs():
    img = torch.zeros((3, 36, 20), dtype=torch.uint8)
    box = torch.tensor([[0, 0, 20, 36]])
    with pytest.raises(ValueError, match="keep_mask"):
        crop_persons(img, box, _keep(1, 10, 10), target_hw=(36, 20))
    with pytest.raises(ValueError, match="together"):
        crop_persons(img, box, _keep(1), vertices=torch.zeros((1, 1, 36, 20), dtype=torch.int64), target_hw=(36, 20))
    with pytest.raises(ValueError, match="uint8"):
        crop_persons(img.float(), box, _keep(1), target_hw=(36, 20))
