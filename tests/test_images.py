import numpy as np
import pytest
import torch
from PIL import Image

from dp2.io.images import ImageError, load_image, resize_max_res, save_image

from helpers import make_image


def roundtrip(tmp_path, pil: Image.Image, name: str, **save_kwargs):
    src = tmp_path / name
    pil.save(src, **save_kwargs)
    image, meta = load_image(src)
    out = tmp_path / f"out_{name}"
    save_image(out, image, meta, original=image)
    return image, meta, Image.open(out)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I"])
def test_modes_roundtrip_unchanged_pixels(tmp_path, mode):
    rgb = Image.fromarray(make_image(20, 30))
    if mode == "I;16":
        pil = Image.fromarray((np.arange(600, dtype=np.uint16).reshape(20, 30) * 100))
    elif mode == "I":
        pil = Image.fromarray((np.arange(600, dtype=np.int32).reshape(20, 30) * 50))
    elif mode == "P":
        pil = rgb.quantize(colors=64)
    else:
        pil = rgb.convert(mode)
    suffix = "tif" if mode in ("CMYK", "I") else "png"
    image, meta, out = roundtrip(tmp_path, pil, f"in.{suffix}")
    assert image.dtype == torch.uint8 and image.shape == (3, 20, 30)
    assert meta.mode == pil.mode
    assert out.mode == pil.mode or (pil.mode == "I;16" and out.mode.startswith("I"))
    if mode in ("RGB", "RGBA", "L", "LA", "I;16", "I"):
        assert np.array_equal(np.array(out), np.array(pil)), "unchanged pixels must come back bit-exact"


def test_alpha_is_kept_and_changed_pixels_written(tmp_path):
    arr = np.dstack([make_image(20, 30), np.full((20, 30), 77, np.uint8)])
    src = tmp_path / "a.png"
    Image.fromarray(arr, "RGBA").save(src)
    image, meta = load_image(src)
    result = image.clone()
    result[:, 5:10, 5:10] = 0
    save_image(tmp_path / "b.png", result, meta, original=image)
    out = np.array(Image.open(tmp_path / "b.png"))
    assert out.shape == (20, 30, 4) and (out[..., 3] == 77).all() and (out[5:10, 5:10, :3] == 0).all()


def test_16bit_changed_region_is_written(tmp_path):
    arr = np.full((20, 30), 40000, np.uint16)
    src = tmp_path / "g16.png"
    Image.fromarray(arr).save(src)
    image, meta = load_image(src)
    result = image.clone()
    result[:, :5, :5] = 0
    save_image(tmp_path / "o16.png", result, meta, original=image)
    out = np.array(Image.open(tmp_path / "o16.png"))
    assert out[:5, :5].max() == 0 and out[10:, 10:].min() == 40000


def test_exif_orientation_applied_and_metadata_stripped(tmp_path):
    pil = Image.fromarray(make_image(20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    exif[0x010F] = "TestCam"
    src = tmp_path / "o.jpg"
    pil.save(src, exif=exif.tobytes(), quality=95)
    image, meta = load_image(src)
    assert image.shape == (3, 30, 20), "EXIF orientation must be applied"
    save_image(tmp_path / "stripped.jpg", image, meta)
    assert not Image.open(tmp_path / "stripped.jpg").getexif()
    save_image(tmp_path / "kept.jpg", image, meta, keep_metadata=True)
    kept = Image.open(tmp_path / "kept.jpg").getexif()
    assert kept[0x010F] == "TestCam" and kept[0x0112] == 1
    assert Image.open(tmp_path / "kept.jpg").size == (20, 30)


def test_corpus_orientation_and_gps_free(corpus, tmp_path):
    image, meta = load_image(corpus / "images" / "pillow_hopper_orientation_6.jpg")
    reference, _ = load_image(corpus / "images" / "pillow_hopper_orientation_3.jpg")
    assert image.shape == reference.shape
    image, meta = load_image(corpus / "images" / "fr_biden.jpg")
    assert meta.exif
    save_image(tmp_path / "biden.jpg", image, meta)
    assert not Image.open(tmp_path / "biden.jpg").getexif()


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"hello, I am text", "not a readable image"),
])
def test_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path)
    assert "bad.jpg" in str(info.value)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "full.jpg"
    Image.fromarray(make_image(200, 200)).save(path, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[:800])
    with pytest.raises(ImageError, match="cut.jpg: corrupt or truncated"):
        load_image(cut)


def test_huge_png_header_is_refused_without_decoding(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path = tmp_path / "huge.png"
    path.write_bytes(png)
    with pytest.raises(ImageError, match="huge.png.*(too large|larger than)"):
        load_image(path)


def test_one_pixel_image(tmp_path):
    path = tmp_path / "one.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    image, _ = load_image(path)
    assert image.shape == (3, 1, 1)


def test_save_errors_and_atomicity(tmp_path):
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ImageError, match="does not exist"):
        save_image(tmp_path / "missing" / "x.png", image)
    with pytest.raises(ImageError, match="unsupported output suffix"):
        save_image(tmp_path / "x.gif", image)
    save_image(tmp_path / "x.png", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"], "no temporary files left behind"


def test_max_res_keeps_aspect():
    image = torch.zeros(3, 100, 300, dtype=torch.uint8)
    assert resize_max_res(image, 150).shape == (3, 50, 150)
    assert resize_max_res(image, 1000).shape == (3, 100, 300)
