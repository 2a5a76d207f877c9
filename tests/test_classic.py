import pytest
import torch

from dp2.anonymizer import Anonymizer
from dp2.stages import RegionFilterStage
from dp2.detection.fixed import FixedFaceDetector
from dp2.generation.classic import GaussianBlur, Identity, MaskOut, Pixelate

from helpers import make_image


def crop_and_mask(h=32, w=40, seed=0):
    img = torch.from_numpy(make_image(h, w, seed)).permute(2, 0, 1)[None].float() / 127.5 - 1
    mask = torch.ones(1, 1, h, w)
    mask[:, :, 8:24, 10:30] = 0
    return img, mask


@pytest.mark.parametrize("generator", [
    GaussianBlur(), GaussianBlur(sigma=7), Pixelate(blocks=8), Pixelate(blocks=16, align_to_region=False),
    MaskOut(fill="black"), MaskOut(fill="grey"), MaskOut(fill=(10, 20, 30)), MaskOut(fill="noise"), Identity(),
])
def test_generator_contract_keeps_known_pixels(generator):
    img, mask = crop_and_mask()
    out = generator(img, mask)
    assert out.shape == img.shape and out.dtype == img.dtype
    keep = mask.expand_as(img) == 1
    assert torch.equal(out[keep], img[keep])
    if not isinstance(generator, Identity):
        assert not torch.allclose(out[~keep], img[~keep])


def test_maskout_black_is_really_black_and_grey_is_dp2_grey():
    img, mask = crop_and_mask()
    hole = mask.expand_as(img) == 0
    black = ((MaskOut(fill="black")(img, mask) + 1) * 127.5).round()
    grey = ((MaskOut(fill="grey")(img, mask) + 1) * 127.5).round()
    assert black[hole].eq(0).all()
    assert grey[hole].eq(128).all()  # DeepPrivacy2's "constant" mask-out: 0 in [-1, 1]


def test_pixelate_makes_blocks_over_the_region():
    img, mask = crop_and_mask()
    out = Pixelate(blocks=4)(img, mask)
    region = out[0, :, 8:24, 10:30]
    # 4 blocks across the 20 px side -> at most 4x4 distinct colours
    colours = region.reshape(3, -1).T.unique(dim=0)
    assert len(colours) <= 16


def test_relative_blur_scales_with_region_size():
    # A big region gets a proportionally bigger blur: high-frequency energy drops the same way.
    torch.manual_seed(0)
    for size in (32, 128):
        img = torch.rand(1, 3, size, size) * 2 - 1
        mask = torch.zeros(1, 1, size, size)
        out = GaussianBlur(sigma_fraction=0.15)(img, mask)
        assert out.std() < 0.1 * img.std()


def test_invalid_parameters():
    with pytest.raises(ValueError, match="sigma"):
        GaussianBlur(sigma=0)
    with pytest.raises(ValueError, match="blocks"):
        Pixelate(blocks=0)
    with pytest.raises(ValueError, match="fill"):
        MaskOut(fill="purple")
    with pytest.raises(ValueError, match="mask_scale"):
        RegionFilterStage(generator=MaskOut(), mask_scale=0.9)


@pytest.mark.parametrize("shape, feather", [("box", 0.0), ("ellipse", 0.0), ("ellipse", 0.2), ("box", 0.1)])
def test_pipeline_changes_only_the_region_and_covers_the_face(shape, feather):
    image = torch.from_numpy(make_image(60, 80)).permute(2, 0, 1).contiguous()
    box = [30, 20, 50, 44]
    stage = RegionFilterStage(generator=MaskOut(fill="black"), mask_scale=1.3, shape=shape, feather=feather)
    anonymizer = Anonymizer(detector=FixedFaceDetector(boxes=[box]), face=stage)
    out = anonymizer.anonymize(image)
    x0, y0, x1, y1 = box
    assert out[:, y0:y1, x0:x1].eq(0).all(), "the whole detected face must be covered"
    changed = (out != image).any(dim=0)
    # Nothing changes outside the scaled (and feathered) region.
    region = stage.regions(torch.tensor([box]))[0]
    size = float(max(region[2] - region[0], region[3] - region[1]))
    grow = 1.5 if shape == "ellipse" else 1.0
    margin = feather * size + (size * (grow - 1)) + 1
    ys, xs = torch.nonzero(changed, as_tuple=True)
    assert xs.min() >= region[0] - margin and xs.max() < region[2] + margin
    assert ys.min() >= region[1] - margin and ys.max() < region[3] + margin
    assert image.equal(torch.from_numpy(make_image(60, 80)).permute(2, 0, 1)), "input must not be modified"


def test_pipeline_faces_at_the_border_and_empty():
    image = torch.from_numpy(make_image(40, 40)).permute(2, 0, 1).contiguous()
    anonymizer = Anonymizer(detector=FixedFaceDetector(boxes=[[-10, -10, 12, 12], [30, 30, 60, 60]]),
                            face=RegionFilterStage(generator=MaskOut(fill="black")))
    out = anonymizer.anonymize(image)
    assert out[:, :12, :12].eq(0).all() and out[:, 30:, 30:].eq(0).all()
    none = Anonymizer(detector=FixedFaceDetector(boxes=[]), face=RegionFilterStage(generator=MaskOut()))
    assert torch.equal(none.anonymize(image), image)


def test_anonymizer_rejects_bad_images():
    anonymizer = Anonymizer(detector=FixedFaceDetector(boxes=[]), face=RegionFilterStage(generator=MaskOut()))
    with pytest.raises(ValueError, match=r"uint8 \[3, H, W\]"):
        anonymizer.anonymize(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"uint8 \[3, H, W\]"):
        anonymizer.anonymize(torch.zeros(8, 8, 3, dtype=torch.uint8))


@pytest.mark.parametrize("shape, sigma, kernel", [((2, 3, 40, 50), 3.0, None), ((1, 1, 7, 90), 5.0, None),
                                                   ((1, 3, 64, 64), 7.0, 21), ((1, 3, 1, 9), 1.0, None)])
def test_cpu_blur_matches_the_torch_convolution(shape, sigma, kernel):
    # float32 on the CPU goes through OpenCV; float64 through torch's conv2d: same filter.
    from dp2.generation.classic import gaussian_blur

    image = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    fast = gaussian_blur(image, sigma, kernel)
    reference = gaussian_blur(image.double(), sigma, kernel)
    assert fast.dtype == torch.float32 and fast.shape == image.shape
    assert torch.allclose(fast.double(), reference, atol=1e-6)
    assert not torch.allclose(fast, image, atol=1e-3), "it blurs"
