import pytest
import torch

from dp2.structures import CropBatch, Detections, FaceDetections


def faces(n=3):
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 20, 25], [30, 30, 31, 31]])[:n]
    return FaceDetections(boxes_xyxy=boxes, scores=torch.tensor([0.9, 0.5, 0.2])[:n], image_size_hw=(40, 50),
                          landmarks=torch.zeros(n, 5, 2))


def test_indexing_by_mask_slice_int_and_list():
    f = faces()
    assert len(f[f.scores > 0.4]) == 2
    assert len(f[1:]) == 2
    assert f[1].boxes_xyxy.tolist() == [[5, 5, 20, 25]]
    assert f[[2, 0]].scores.tolist() == pytest.approx([0.2, 0.9])
    assert f[f.scores > 0.4].landmarks.shape == (2, 5, 2)


def test_empty_and_cat():
    e = FaceDetections.empty((40, 50), with_landmarks=True)
    assert len(e) == 0
    joined = FaceDetections.cat([faces(2), e, faces(1)])
    assert len(joined) == 3 and joined.landmarks.shape == (3, 5, 2)
    with pytest.raises(ValueError, match="image sizes differ"):
        FaceDetections.cat([faces(1), FaceDetections.empty((1, 1), with_landmarks=True)])


def test_to_device_keeps_values():
    f = faces().to("cpu")
    assert f.boxes_xyxy.device.type == "cpu" and len(f) == 3


@pytest.mark.parametrize("boxes, scores, message", [
    (torch.zeros(3, 5, dtype=torch.int64), torch.zeros(3), r"shape \[N, 4\], got \[3, 5\]"),
    (torch.zeros(3, 4), torch.zeros(3), "must be int64"),
    (torch.zeros(3, 4, dtype=torch.int64), torch.zeros(2), r"scores must have shape \[3\]"),
])
def test_validation_messages(boxes, scores, message):
    with pytest.raises(ValueError, match=message):
        FaceDetections(boxes_xyxy=boxes, scores=scores, image_size_hw=(10, 10))


def test_detections_set_counts_in_order():
    d = Detections(image_size_hw=(40, 50), faces=faces())
    assert d.count() == {"faces": 3} and len(d) == 3
    assert [k for k, _ in d.items()] == ["faces"]


def test_crop_batch_validation_and_indexing():
    batch = CropBatch(images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8), keep_mask=torch.ones(2, 1, 8, 8, dtype=torch.bool),
                      boxes_xyxy=torch.zeros(2, 4, dtype=torch.int64))
    assert len(batch[1]) == 1 and batch.size_hw == (8, 8)
    with pytest.raises(ValueError, match="keep_mask must be bool"):
        CropBatch(images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8), keep_mask=torch.ones(2, 1, 8, 8),
                  boxes_xyxy=torch.zeros(2, 4, dtype=torch.int64))
