"""Images that try to leak or lose something: metadata carrying a face, frames beyond the first,
modes whose untouched pixels a naive re-encode would change, and sizes beyond the memory.

End-to-end cases run the CLI with a fake detector (one face at (20, 16)-(44, 40), black mask-out
over 1.3x the box), so the anonymized region of a 64x80 image is rows 12-43, columns 16-47.
"""
import io
import logging
import struct

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from dp2.cli import main
from dp2.io import images as images_module
from dp2.io.images import ImageError, ImageReader, load_image, pixel_limit, save_image
from dp2.io.metadata import sanitize_exif, sanitize_icc

from helpers import CORPUS, make_image

H, W = 64, 80
REGION = (slice(12, 44), slice(16, 48))  # rows, columns the fake detector's face covers


def outside_mask(h=H, w=W):
    mask = np.ones((h, w), bool)
    mask[REGION] = False
    return mask


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def anonymize(fixed_config, src, dst, *extra):
    result = run(fixed_config, "-i", src, "-o", dst, *extra)
    assert result.exit_code == 0, result.output
    return result


# --- a face JPEG to plant ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    """A small JPEG of a face (corpus photo crop; a synthetic picture without the corpus)."""
    path = CORPUS / "images" / "fr_obama-240p.jpg"
    pil = Image.open(path).convert("RGB").crop((150, 20, 280, 170)) if path.is_file() else \
        Image.fromarray(make_image(96, 96, seed=7))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def assert_no_plant(data: bytes, planted: bytes, *, jpeg_output: bool) -> None:
    # The planted file's entropy-coded payload (past its headers) must be nowhere in the output.
    assert planted[-2000:-2] not in data
    assert data.count(b"\xff\xd8\xff") == (1 if jpeg_output else 0), "an embedded JPEG survived"


_SRGB: list[bytes] = []


def srgb_profile() -> bytes:
    """An sRGB profile made by LittleCMS (made once: it holds its creation time)."""
    if not _SRGB:
        _SRGB.append(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    return _SRGB[0]


def icc_with_private_tag(payload: bytes) -> bytes:
    """The sRGB profile plus a private tag 'zzzz' holding ``payload`` (a valid profile)."""
    p = bytearray(srgb_profile())
    count = struct.unpack(">I", p[128:132])[0]
    table_end = 132 + 12 * count
    body = bytes(p[table_end:])
    shift = 12
    entries = []
    for i in range(count):
        sig, off, size = struct.unpack(">4sII", p[132 + 12 * i: 144 + 12 * i])
        entries.append(struct.pack(">4sII", sig, off + shift, size))
    tail_offset = table_end + shift + len(body)
    tail_offset += -tail_offset % 4
    entries.append(struct.pack(">4sII", b"zzzz", tail_offset, len(payload)))
    out = bytearray(p[:128]) + struct.pack(">I", count + 1) + b"".join(entries) + body
    out += b"\x00" * (tail_offset - len(out)) + payload
    out[:4] = struct.pack(">I", len(out))
    return bytes(out)


def exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """Little-endian EXIF: IFD0 (Make, Orientation) -> IFD1 with a JPEG thumbnail (0x0201/0x0202)."""
    make = b"CameraCo\x00"  # longer than 4 bytes: stored at an offset
    ifd0_off = 8
    ifd0 = 2 + 12 * 2 + 4
    ifd1_off = ifd0_off + ifd0
    ifd1 = 2 + 12 * 2 + 4
    make_off = ifd1_off + ifd1
    thumb_off = make_off + len(make)
    out = b"II*\x00" + struct.pack("<I", ifd0_off)
    out += struct.pack("<H", 2)
    out += struct.pack("<HHII", 0x010F, 2, len(make), make_off)
    out += struct.pack("<HHIHH", 0x0112, 3, 1, 1, 0)
    out += struct.pack("<I", ifd1_off)
    out += struct.pack("<H", 2)
    out += struct.pack("<HHII", 0x0201, 4, 1, thumb_off)
    out += struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail))
    out += struct.pack("<I", 0)
    out += make + thumbnail
    return b"Exif\x00\x00" + out


# --- 1. metadata ----------------------------------------------------------------------------

def test_icc_tail_is_cut_to_the_declared_size_and_still_parses(face_jpeg):
    clean = srgb_profile()
    out = sanitize_icc(clean + b"owner: Jane Doe, 12 Main St" + face_jpeg)
    assert out == clean  # already tidy: rebuilt byte for byte
    ImageCms.ImageCmsProfile(io.BytesIO(out))


def test_icc_private_tag_and_gap_are_dropped(face_jpeg):
    planted = icc_with_private_tag(face_jpeg)
    ImageCms.ImageCmsProfile(io.BytesIO(planted))  # a valid profile that carries the face
    out = sanitize_icc(planted)
    assert face_jpeg[100:400] not in out and b"zzzz" not in out
    ImageCms.ImageCmsProfile(io.BytesIO(out))
    # Data between tags (inside the declared size, referenced by no tag) is not copied either.
    gap = bytearray(srgb_profile())
    gap[-8:] = b"SECRETXX"  # chrm's data is 36 bytes; this overwrites padding past the last tag's data
    gap += b"HIDDEN-IN-GAP" + b"\x00" * 3
    gap[:4] = struct.pack(">I", len(gap))
    assert b"HIDDEN-IN-GAP" not in sanitize_icc(bytes(gap))


def _icc_bad_size(p):
    return struct.pack(">I", len(p) + 100) + p[4:]


def _icc_bad_tag(p):
    return p[:136] + struct.pack(">I", len(p) + 50) + p[140:]


@pytest.mark.parametrize("make, reason", [
    (lambda p: p[:100], "shorter than an ICC header"),
    (lambda p: p[:36] + b"xxxx" + p[40:], "acsp"),
    (_icc_bad_size, "declared size"),
    (_icc_bad_tag, "outside the profile"),
    (lambda p: p[:128] + struct.pack(">I", 10**6) + p[132:], "tag table"),
])
def test_icc_that_does_not_parse_is_dropped_with_a_warning(caplog, make, reason):
    with caplog.at_level(logging.WARNING):
        assert sanitize_icc(make(srgb_profile()), "x.jpg") is None
    assert reason in caplog.text and "x.jpg" in caplog.text


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_default_mode_icc_with_appended_face_cannot_be_found_in_output(tmp_path, fixed_config, face_jpeg, suffix):
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    profile = srgb_profile() + face_jpeg + b"owner: Jane Doe"
    Image.fromarray(make_image(H, W)).save(src, icc_profile=profile, **({"quality": 95} if suffix == ".jpg" else {}))
    assert face_jpeg in Image.open(src).info["icc_profile"]  # (PNG and WebP compress it in the file)
    anonymize(fixed_config, src, dst)
    data, kept = dst.read_bytes(), Image.open(dst).info["icc_profile"]
    assert_no_plant(data, face_jpeg, jpeg_output=suffix == ".jpg")
    assert_no_plant(kept, face_jpeg, jpeg_output=False)
    assert b"Jane Doe" not in data and b"Jane Doe" not in kept
    assert kept == srgb_profile()  # the profile itself is kept


def test_keep_metadata_drops_makernote_thumbnail_and_blobs(tmp_path, fixed_config, face_jpeg):
    from PIL import ExifTags

    exif = Image.Exif()
    exif.load(exif_with_thumbnail(face_jpeg))
    exif[0x8769] = {0x927C: face_jpeg, 0x9286: b"ASCII\x00\x00\x00" + face_jpeg, 0x829A: (1, 200)}
    exif[0x010E] = "A caption that reads as prose, kept with the other plain tags"
    exif[0x8825] = {2: (59.0, 54.0, 0.0)}
    raw = exif.tobytes()
    # Also the IFD1 thumbnail, by hand (PIL does not write IFD1): splice the planted EXIF's.
    src, dst = tmp_path / "in.jpg", tmp_path / "out.jpg"
    Image.fromarray(make_image(H, W)).save(src, exif=raw, quality=95)
    thumb_src = tmp_path / "thumb.jpg"
    Image.fromarray(make_image(H, W)).save(thumb_src, exif=exif_with_thumbnail(face_jpeg), quality=95)
    assert face_jpeg[-2000:-2] in src.read_bytes() and face_jpeg[-2000:-2] in thumb_src.read_bytes()
    for source in (src, thumb_src):
        anonymize(fixed_config, source, dst, "--keep-metadata")
        data = dst.read_bytes()
        assert_no_plant(data, face_jpeg, jpeg_output=True)
        kept = Image.open(dst).getexif()
        assert kept[0x0112] == 1
        assert not kept.get_ifd(ExifTags.IFD.IFD1)
        if source is src:
            assert kept[0x010E].startswith("A caption") and kept.get_ifd(0x8825)
            assert 0x927C not in kept.get_ifd(0x8769) and 0x9286 not in kept.get_ifd(0x8769)
            assert kept.get_ifd(0x8769)[0x829A] == (1, 200) or float(kept.get_ifd(0x8769)[0x829A]) == 0.005
        else:
            assert kept[0x010F] == "CameraCo"


def test_keep_metadata_never_writes_xmp_comments_or_text(tmp_path, fixed_config, face_jpeg):
    import base64

    from PIL import PngImagePlugin

    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><xmpGImg:image>' + base64.b64encode(face_jpeg) + b"</xmpGImg:image>"
    jpg, png = tmp_path / "in.jpg", tmp_path / "in.png"
    Image.fromarray(make_image(H, W)).save(jpg, xmp=xmp, comment=b"Jane Doe", quality=95)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Jane Doe")
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    Image.fromarray(make_image(H, W)).save(png, pnginfo=info)
    for src in (jpg, png):
        dst = tmp_path / f"out{src.suffix}"
        anonymize(fixed_config, src, dst, "--keep-metadata")
        data = dst.read_bytes()
        assert b"Jane Doe" not in data and base64.b64encode(face_jpeg)[:200] not in data and b"xmpmeta" not in data


def test_sanitize_exif_drops_long_encoded_text_keeps_prose():
    exif = Image.Exif()
    exif[0x010E] = "QUJD" * 200  # base64-looking: could be an encoded preview
    exif[0x8298] = "Copyright " + "words and more words " * 20
    out = Image.Exif()
    out.load(sanitize_exif(exif.tobytes()))
    assert 0x010E not in out and out[0x8298].startswith("Copyright")


@pytest.mark.parametrize("data", [b"Exif\x00\x00II*\x00\xff\xff\xff\xff", b"\x00" * 40, b"MM\x00*" + b"\xff" * 60])
def test_sanitize_exif_on_garbage_keeps_nothing_of_it(data):
    out = sanitize_exif(data)
    if out is not None:
        exif = Image.Exif()
        exif.load(out)
        assert dict(exif) == {0x0112: 1}


def test_corpus_exif_thumbnail_is_not_kept(corpus, tmp_path):
    src = corpus / "images" / "fr_biden.jpg"
    assert Image.open(src).info["exif"].count(b"\xff\xd8\xff") == 1  # the file's EXIF holds a thumbnail
    image, meta = load_image(src)
    save_image(tmp_path / "out.jpg", image, meta, original=image, keep_metadata=True)
    assert (tmp_path / "out.jpg").read_bytes().count(b"\xff\xd8\xff") == 1
    assert Image.open(tmp_path / "out.jpg").getexif()[0x0110] == "Canon EOS 5D Mark II"


# --- 3. untouched pixels keep their exact samples, for every mode ------------------------------

def _p_small():
    return Image.fromarray(make_image(H, W)).quantize(colors=40, dither=Image.Dither.NONE)


def _p_full():
    return Image.fromarray(make_image(H, W)).quantize(colors=256, dither=Image.Dither.NONE)


def _p_transparent():
    pil = _p_small()
    pil.info["transparency"] = 3
    return pil


def _p_trns_bytes():
    pil = _p_small()
    pil.info["transparency"] = bytes([255, 0, 128] + [255] * 37)
    return pil


def _gray16():
    return Image.fromarray((np.arange(H * W, dtype=np.uint16).reshape(H, W) * 13))


def _int32():
    return Image.fromarray((np.arange(H * W, dtype=np.int32).reshape(H, W) * 50))


def _float():
    return Image.fromarray(np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W), "F")


def _bilevel():
    return Image.fromarray(make_image(H, W)[..., 0] > 128)


def _la():
    return Image.fromarray(np.dstack([make_image(H, W)[..., 1], np.full((H, W), 90, np.uint8)]), "LA")


def _rgba():
    return Image.fromarray(np.dstack([make_image(H, W), make_image(H, W, seed=3)[..., 0]]), "RGBA")


def _save_pil(make, kw=None):
    def save(path):
        pil = make()
        params = dict(kw or {})
        if "transparency" in pil.info:
            params["transparency"] = pil.info["transparency"]
        pil.save(path, **params)
    return save


def _save_16(channels):
    def save(path):
        data = (make_image(H, W).astype(np.uint16) * 257 + np.arange(W, dtype=np.uint16)[None, :, None])
        if channels == 4:
            data = np.dstack([data, np.full((H, W), 40000, np.uint16)])
        cv2.imwrite(str(path), np.ascontiguousarray(data[..., [2, 1, 0, 3][:channels]]))
    return save


def _native(path):
    """Samples as stored: 16-bit via OpenCV, everything else via PIL (P: indices)."""
    im = Image.open(path)
    if im.tile and ";16" in str(im.tile[0].args) and im.mode in ("RGB", "RGBA"):
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED), im.mode
    return np.array(im), im.mode


MODES = [
    ("RGB", ".png", _save_pil(lambda: Image.fromarray(make_image(H, W)))),
    ("RGBA", ".png", _save_pil(_rgba)),
    ("L", ".png", _save_pil(lambda: Image.fromarray(make_image(H, W)[..., 0]))),
    ("LA", ".png", _save_pil(_la)),
    ("P-40", ".png", _save_pil(_p_small)),
    ("P-256", ".png", _save_pil(_p_full)),
    ("P-transparent", ".png", _save_pil(_p_transparent)),
    ("P-tRNS", ".png", _save_pil(_p_trns_bytes)),
    ("P-bmp", ".bmp", _save_pil(_p_full)),
    ("P-tif", ".tif", _save_pil(_p_small)),
    ("1", ".png", _save_pil(_bilevel)),
    ("1-tif", ".tif", _save_pil(_bilevel)),
    ("1-tif-group4", ".tif", _save_pil(_bilevel, {"compression": "group4"})),
    ("RGB-webp-lossless", ".webp", _save_pil(lambda: Image.fromarray(make_image(H, W)), {"lossless": True})),
    ("RGBA-webp-lossless", ".webp", _save_pil(_rgba, {"lossless": True, "exact": True})),
    ("RGB-tif-lzw", ".tif", _save_pil(lambda: Image.fromarray(make_image(H, W)), {"compression": "tiff_lzw"})),
    ("I;16", ".png", _save_pil(_gray16)),
    ("I", ".tif", _save_pil(_int32)),
    ("F", ".tif", _save_pil(_float)),
    ("CMYK", ".tif", _save_pil(lambda: Image.fromarray(make_image(H, W)).convert("CMYK"))),
    ("RGB48", ".png", _save_16(3)),
    ("RGB48-tif", ".tif", _save_16(3)),
    ("RGBA64", ".png", _save_16(4)),
]


@pytest.mark.parametrize("name, suffix, save", MODES, ids=[m[0] for m in MODES])
def test_untouched_pixels_keep_their_exact_samples(tmp_path, fixed_config, name, suffix, save):
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    save(src)
    anonymize(fixed_config, src, dst)
    before, mode_in = _native(src)
    after, mode_out = _native(dst)
    assert mode_out == mode_in and after.dtype == before.dtype and after.shape == before.shape
    outside = outside_mask()
    assert np.array_equal(after[outside], before[outside]), f"{name}: pixels outside the face changed"
    if mode_in == "P":
        pal_in = np.array(Image.open(src).getpalette()).reshape(-1, 3)
        pal_out = np.array(Image.open(dst).getpalette()).reshape(-1, 3)
        assert np.array_equal(pal_out[after[outside]], pal_in[before[outside]]), "outside colours changed"
    rgb = np.array(Image.open(dst).convert("RGBA"))[..., :3] if mode_in not in ("I", "F") else None
    if rgb is not None and mode_in != "P" or name == "P-256":
        assert rgb[REGION].max() <= 60, "the region is masked out (black, or the nearest palette colour)"
    if name in ("P-40", "P-transparent", "P-tRNS"):
        assert rgb[REGION].max() == 0, "a free palette slot holds the new colour"


@pytest.mark.parametrize("name, suffix, save", MODES, ids=[m[0] for m in MODES])
def test_max_res_resamples_every_mode(tmp_path, fixed_config, name, suffix, save):
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    save(src)
    anonymize(fixed_config, src, dst, "--max-res", 40)
    assert Image.open(dst).size == (40, 32)


def test_max_res_keeps_alpha_resized(tmp_path, fixed_config):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    _rgba().save(src)
    anonymize(fixed_config, src, dst, "--max-res", 40)
    out = Image.open(dst)
    assert out.mode == "RGBA" and out.size == (40, 32)


def test_lossless_inputs_keep_their_compression(tmp_path, fixed_config):
    for name, make, kw in (("lzw.tif", lambda: Image.fromarray(make_image(H, W)), {"compression": "tiff_lzw"}),
                           ("g4.tif", _bilevel, {"compression": "group4"})):
        make().save(tmp_path / name, **kw)
        anonymize(fixed_config, tmp_path / name, tmp_path / f"out_{name}")
        assert Image.open(tmp_path / f"out_{name}").info["compression"] == kw["compression"]
    Image.fromarray(make_image(H, W)).save(tmp_path / "l.webp", lossless=True)
    anonymize(fixed_config, tmp_path / "l.webp", tmp_path / "out_l.webp")
    assert b"VP8L" in (tmp_path / "out_l.webp").read_bytes()


def test_corpus_palette_png_keeps_indices_outside_the_region(corpus, tmp_path):
    src = corpus / "images" / "egoblur_gen2_test_face_image.png"
    image, meta = load_image(src)
    result = image.clone()
    result[:, 500:700, 1000:1300] = 0
    save_image(tmp_path / "out.png", result, meta, original=image)
    before, after = np.array(Image.open(src)), np.array(Image.open(tmp_path / "out.png"))
    outside = np.ones(before.shape, bool)
    outside[500:700, 1000:1300] = False
    assert Image.open(tmp_path / "out.png").mode == "P"
    assert np.array_equal(before[outside], after[outside])
    assert Image.open(src).getpalette() == Image.open(tmp_path / "out.png").getpalette()[:768]


# --- 2. frames beyond the first -----------------------------------------------------------------

def _frames(n=3, h=H, w=W):
    return [Image.fromarray(make_image(h, w, seed=i)) for i in range(n)]


def _apng(path):
    f = _frames()
    f[0].save(path, save_all=True, append_images=f[1:], duration=[100, 150, 200], loop=3)


def _apng_default_image(path):
    f = _frames()
    f[0].save(path, save_all=True, append_images=f[1:], duration=[100, 150, 200], loop=0, default_image=True)


def _webp(path):
    f = _frames()
    f[0].save(path, save_all=True, append_images=f[1:], duration=[100, 150, 200], loop=3, lossless=True)


def _tiff(path):
    other_size = Image.fromarray(make_image(H + 6, W + 10, seed=5)).convert("L")
    pages = [Image.fromarray(make_image(H, W)), _p_small(), other_size]
    pages[0].save(path, save_all=True, append_images=pages[1:], compression="tiff_lzw")


ANIMATIONS = [("apng", ".png", _apng), ("apng-default-image", ".png", _apng_default_image),
              ("webp", ".webp", _webp), ("tiff-pages", ".tif", _tiff)]


@pytest.mark.parametrize("name, suffix, make", ANIMATIONS, ids=[a[0] for a in ANIMATIONS])
def test_every_frame_is_anonymized_and_timing_kept(tmp_path, fixed_config, name, suffix, make):
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    make(src)
    result = anonymize(fixed_config, src, dst)
    assert "(3 frames)" in result.output
    a, b = Image.open(src), Image.open(dst)
    assert b.n_frames == a.n_frames == 3
    assert b.info.get("loop") == a.info.get("loop") and b.info.get("default_image") == a.info.get("default_image")
    for i in range(3):
        a.seek(i)
        b.seek(i)
        assert b.info.get("duration") == a.info.get("duration") and b.size == a.size and b.mode == a.mode
        before, after = np.array(a), np.array(b)
        outside = outside_mask(*before.shape[:2])
        assert np.array_equal(before[outside], after[outside]), f"frame {i}: pixels outside the face changed"
        rgb = np.array(b.convert("RGB"))
        assert rgb[REGION].max() <= 60, f"frame {i} was not anonymized"


def test_folder_manifest_counts_frames(tmp_path, fixed_config):
    import json

    folder = tmp_path / "in"
    folder.mkdir()
    _apng(folder / "anim.png")
    Image.fromarray(make_image(H, W)).save(folder / "one.png")
    result = run(fixed_config, "-i", folder, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "dp2_manifest.jsonl").read_text().splitlines()
    records = {r["input"]: r for r in map(json.loads, lines)}
    assert records["anim.png"]["frames"] == 3 and records["anim.png"]["detections"] == {"faces": 3}
    assert records["one.png"]["frames"] == 1


def test_animation_to_a_one_frame_format_is_refused_before_any_work(tmp_path, fixed_config):
    src = tmp_path / "anim.png"
    _apng(src)
    result = run(fixed_config, "-i", src, "-o", tmp_path / "out.jpg")
    assert result.exit_code == 1
    assert "anim" in result.output or "out.jpg" in result.output
    assert "3 frames" in result.output and ".webp" in result.output
    assert not (tmp_path / "out.jpg").exists()


def test_mpo_writes_the_first_image_and_says_so(tmp_path, fixed_config):
    src, dst = tmp_path / "stereo.jpg", tmp_path / "out.jpg"
    f = _frames(2)
    f[0].save(src, format="MPO", save_all=True, append_images=f[1:])
    result = anonymize(fixed_config, src, dst)
    assert "stereo.jpg: MPO file with 2 images" in result.output and "dropped" in result.output
    out = Image.open(dst)
    assert out.format == "JPEG" and getattr(out, "n_frames", 1) == 1
    assert dst.read_bytes().count(b"\xff\xd8\xff") == 1


def test_gif_is_refused_with_a_reason(tmp_path, fixed_config):
    src = tmp_path / "anim.gif"
    f = _frames()
    f[0].save(src, save_all=True, append_images=f[1:], duration=100)
    result = run(fixed_config, "-i", src)
    assert result.exit_code == 2 and "GIF is not supported" in result.output and "anim.gif" in result.output
    renamed = tmp_path / "anim.png"
    renamed.write_bytes(src.read_bytes())  # a GIF under another name is refused too
    result = run(fixed_config, "-i", renamed, "-o", tmp_path / "o.png")
    assert result.exit_code == 1 and "GIF is not supported" in result.output


def test_corrupt_later_frame_names_file_and_frame_and_writes_nothing(tmp_path, fixed_config):
    src = tmp_path / "anim.webp"
    _webp(src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])
    result = run(fixed_config, "-i", src, "-o", tmp_path / "out.webp")
    assert result.exit_code == 1 and "anim.webp" in result.output
    assert not (tmp_path / "out.webp").exists()


# --- 4. size and memory ---------------------------------------------------------------------

def test_pixel_limit_follows_available_memory(monkeypatch):
    monkeypatch.delenv(images_module.PIXELS_ENV, raising=False)
    monkeypatch.setattr(images_module, "memory_available", lambda: 4 << 30)
    limit, why = pixel_limit()
    assert limit == ((4 << 30) - images_module.MODEL_RESERVE_BYTES) // images_module.BYTES_PER_PIXEL
    assert "4.0 GiB" in why
    monkeypatch.setattr(images_module, "memory_available", lambda: 1 << 40)
    assert pixel_limit()[0] == images_module.MAX_PIXELS
    monkeypatch.setenv(images_module.PIXELS_ENV, "1000")
    assert pixel_limit() == (1000, f"${images_module.PIXELS_ENV}")


def test_image_beyond_the_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    src = tmp_path / "big.png"
    Image.fromarray(make_image(H, W)).save(src)
    monkeypatch.delenv(images_module.PIXELS_ENV, raising=False)
    monkeypatch.setattr(images_module, "memory_available",
                        lambda: images_module.MODEL_RESERVE_BYTES + 1000 * images_module.BYTES_PER_PIXEL)
    decoded = []
    monkeypatch.setattr(images_module, "_decode", lambda *a: decoded.append(a))
    with pytest.raises(ImageError, match=r"big.png: 80x64 pixels is larger than the 0.0 MP .* memory available"):
        load_image(src)
    assert not decoded


def test_frames_count_towards_the_memory_of_an_animation(tmp_path, monkeypatch):
    src = tmp_path / "anim.png"
    _apng(src)
    monkeypatch.delenv(images_module.PIXELS_ENV, raising=False)
    budget = images_module.MODEL_RESERVE_BYTES + H * W * images_module.BYTES_PER_PIXEL + 10
    monkeypatch.setattr(images_module, "memory_available", lambda: budget)
    with pytest.raises(ImageError, match=r"anim.png: 80x64 pixels \(3 frames\)"):
        ImageReader(src)
    Image.fromarray(make_image(H, W)).save(tmp_path / "one.png")
    load_image(tmp_path / "one.png")  # the same size as a single frame fits


def test_memory_limit_via_cli_is_one_line_and_exit_1(tmp_path, fixed_config, monkeypatch):
    src = tmp_path / "big.png"
    Image.fromarray(make_image(H, W)).save(src)
    monkeypatch.setenv(images_module.PIXELS_ENV, "1000")
    result = run(fixed_config, "-i", src, "-o", tmp_path / "out.png")
    assert result.exit_code == 1 and "big.png: 80x64 pixels is larger than the 0.0 MP" in result.output
    assert not (tmp_path / "out.png").exists()
