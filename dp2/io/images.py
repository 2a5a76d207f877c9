"""Reading and writing still images, of one frame or several, keeping what can be kept.

Processing always happens on uint8 RGB frames. :class:`ImageMeta` remembers what each frame of
the file had (mode, alpha, palette, 16-bit or CMYK samples) so the written frame keeps the
input's mode, and **pixels that anonymization did not change are written back with their
original values**: palette images keep their palette and the indices of untouched pixels
(changed pixels get the nearest palette colour, or a colour added in a free palette slot),
16-bit, CMYK, bilevel, integer and float samples of untouched pixels are copied as they were.
JPEG and lossy WebP outputs are re-encoded, so there every pixel passes through the encoder.

Files with several frames are read frame by frame (:class:`ImageReader`) and written whole
(:class:`ImageWriter`): animated WebP and PNG (APNG) keep every frame with its duration and
the loop count, multi-page TIFF keeps every page. An MPO file (a JPEG with further views or
previews of the same scene) is written as a plain JPEG of its first image, with a warning.
GIF is not read (see :data:`UNSUPPORTED_SUFFIXES`).

EXIF orientation is applied on read and the output is written upright. Metadata goes through
:mod:`dp2.io.metadata`: the ICC profile is kept only after it parses (rebuilt from its declared
tags); EXIF only with ``keep_metadata`` and then without MakerNote, thumbnail or embedded
blobs; XMP, IPTC, comments and text chunks are never written.

Size: an image is refused before decoding when it is larger than the pixel limit of this
machine (:func:`pixel_limit`): the memory one frame needs (:data:`BYTES_PER_PIXEL`, measured by
``bench/bench_memory.py``) must fit in the memory available, and at most :data:`MAX_PIXELS`
(``$DP2_MAX_IMAGE_PIXELS`` sets the limit instead).
"""
from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .atomic import partial_sibling
from .kinds import IMAGE_SUFFIXES, UNSUPPORTED_SUFFIXES  # defined without torch: the CLI checks suffixes early
from .metadata import icc_colour_space, sanitize_exif, sanitize_icc

__all__ = ["BYTES_PER_PIXEL", "IMAGE_SUFFIXES", "ImageError", "ImageMeta", "ImageReader", "ImageWriter", "MAX_PIXELS",
           "UNSUPPORTED_SUFFIXES", "atomic_write_path", "load_image", "pixel_limit", "resize_max_res", "save_image"]

logger = logging.getLogger(__name__)

MAX_PIXELS = 20_000 * 12_000  # 240 MP: the cap even where memory would allow more
PIXELS_ENV = "DP2_MAX_IMAGE_PIXELS"
# Peak memory per pixel of one frame, decode to write: bench/bench_memory.py measures ~10 bytes per
# pixel above start-up and the detector's bounded share (JPEG and PNG, 8-bit RGB, default config);
# the margin covers palette, CMYK and greyscale frames, which also keep their own samples.
BYTES_PER_PIXEL = 24
BYTES_PER_PIXEL_16_BIT = 48  # 48/64-bit RGB(A): the 16-bit samples are decoded a second time (OpenCV)
STORED_BYTES_PER_PIXEL = 10  # per frame of a multi-frame file: held until written, copied by the APNG writer
MODEL_RESERVE_BYTES = 2 << 30  # the models' own working memory (CenterFace: ~1.6 GB, see max_whole_pixels)
WEBP_QUALITY = 95


class ImageError(ValueError):
    """An image file cannot be read or written; the message names the file."""


@dataclass
class ImageMeta:
    """What the reader learnt about one frame (and its file), used to write it back.

    Attributes:
        mode: the frame's PIL mode (``"RGB"``, ``"P"``, ``"I;16"``, ``"RGB;16"`` for 48-bit ...).
        format: the file's PIL format.
        alpha: uint8 (uint16 for 16-bit) [H, W], upright, or None.
        native: the samples RGB cannot hold exactly, upright: palette indices (P), CMYK, bool
            (``"1"``), 16-bit, int or float samples; None for RGB, RGBA, L and LA.
        palette: P: uint8 [n, 3]; palette_alpha: P: uint8 [n] (255 = opaque) or None.
        exif: the file's raw EXIF (sanitized when written); icc_profile: the sanitized profile.
        index, duration_ms: position in the file and display time (animations).
        size_hw: the frame's upright size as read.
    """

    mode: str
    format: str | None
    alpha: np.ndarray | None = None
    native: np.ndarray | None = None
    palette: np.ndarray | None = None
    palette_alpha: np.ndarray | None = None
    exif: bytes | None = None
    icc_profile: bytes | None = None
    index: int = 0
    duration_ms: float | None = None
    size_hw: tuple[int, int] | None = None  # upright size as read (alpha and native have it)
    extra: dict = field(default_factory=dict)

    @property
    def high_bit(self) -> np.ndarray | None:  # the name of earlier versions
        return self.native if self.mode in _HIGH_BIT_MODES else None


_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "RGB;16", "RGBA;16")


# --- memory and the pixel limit ---------------------------------------------------------------

def memory_available() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def pixel_limit(stored_pixels: int = 0, bytes_per_pixel: int = BYTES_PER_PIXEL) -> tuple[int, str]:
    """The largest frame (pixels) this machine anonymizes now, and where that limit comes from.

    ``$DP2_MAX_IMAGE_PIXELS`` sets it outright. Otherwise it is what fits in the available
    memory, less :data:`MODEL_RESERVE_BYTES` and what ``stored_pixels`` (the frames of a
    multi-frame file, held until it is written) take, at ``bytes_per_pixel``, and at most
    :data:`MAX_PIXELS`.
    """
    given = os.environ.get(PIXELS_ENV, "").strip()
    if given:
        try:
            return max(1, int(float(given))), f"${PIXELS_ENV}"
        except ValueError:
            logger.warning("ignoring $%s=%r: not a number of pixels", PIXELS_ENV, given)
    available = memory_available()
    if available is None:
        return MAX_PIXELS, "the default cap"
    usable = available - MODEL_RESERVE_BYTES - stored_pixels * STORED_BYTES_PER_PIXEL
    by_memory = max(0, usable // bytes_per_pixel)
    if by_memory >= MAX_PIXELS:
        return MAX_PIXELS, "the default cap"
    return int(by_memory), f"the {available / 2**30:.1f} GiB of memory available"


def _check_size(path: Path, sizes: list[tuple[int, int]], bytes_per_pixel: int = BYTES_PER_PIXEL) -> None:
    """Refuse (before decoding) frames without pixels or beyond :func:`pixel_limit`."""
    for w, h in sizes:
        if w < 1 or h < 1:
            raise ImageError(f"{path}: image has no pixels ({w}x{h})")
    largest = max(w * h for w, h in sizes)
    stored = sum(w * h for w, h in sizes) if len(sizes) > 1 else 0
    limit, why = pixel_limit(stored, bytes_per_pixel)
    if largest > limit:
        w, h = max(sizes, key=lambda s: s[0] * s[1])
        frames = f" ({len(sizes)} frames)" if len(sizes) > 1 else ""
        raise ImageError(f"{path}: {w}x{h} pixels{frames} is larger than the {limit / 1e6:.1f} MP this machine can "
                         f"anonymize (set by {why}; about {bytes_per_pixel} bytes per pixel); shrink it, free "
                         f"memory or set ${PIXELS_ENV}")


# --- reading ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _own_size_limit():
    """PIL's decompression-bomb check off: :func:`_check_size` applies dp2's limit before decoding."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _open(path: Path) -> Image.Image:
    """Open (header only) and check the file; nothing is decoded yet."""
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, expected an image file")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file, expected an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes), expected an image")
    reason = UNSUPPORTED_SUFFIXES.get(path.suffix.lower())
    if reason:
        raise ImageError(f"{path}: {reason}")
    try:
        with _own_size_limit():
            im = Image.open(path)
    except UnidentifiedImageError as e:
        raise ImageError(f"{path}: not a readable image (expected one of {', '.join(IMAGE_SUFFIXES)})") from e
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from e
    if im.format == "GIF":
        im.close()
        raise ImageError(f"{path}: {UNSUPPORTED_SUFFIXES['.gif']}")
    return im


def _orientation(im: Image.Image, path: Path) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
        return value if value in range(1, 9) else 1
    except Exception as e:  # a broken EXIF block must not stop anonymization
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", path, e)
        return 1


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    return im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im


def _raw_mode(im: Image.Image) -> str:
    try:
        args = im.tile[0].args if im.tile else None
    except (AttributeError, IndexError):
        return ""
    return (args[0] if isinstance(args, tuple) else args) if isinstance(args, (str, tuple)) and args else ""


def _is_16_bit_colour(im: Image.Image) -> bool:
    """48/64-bit RGB(A), which PIL would decode to 8 bits."""
    return im.mode in ("RGB", "RGBA") and im.format in ("PNG", "TIFF") and ";16" in str(_raw_mode(im))


class ImageReader:
    """An image file, checked on opening (size, memory, frames) and decoded one frame at a time.

    Attributes:
        path, format: the file and its PIL format.
        n_frames: frames in the file; ``frames_to_write`` of them are read and written.
        kind: ``"single"``, ``"animation"`` (WebP, APNG: durations and loop), ``"pages"``
            (multi-page TIFF) or ``"views"`` (MPO: only the first image is written).
        loop, default_image, background, lossless: animation and WebP settings to write back.

    Raises:
        ImageError: missing, empty, unsupported, corrupt or oversized file (before decoding).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._im = _open(self.path)
        try:
            with _own_size_limit():
                self._setup()
        except ImageError:
            self.close()
            raise
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
            self.close()
            raise ImageError(f"{self.path}: corrupt or truncated image ({e})") from e

    def _setup(self) -> None:
        im = self._im
        self.format = im.format
        self._sixteen = _is_16_bit_colour(im)  # before anything loads the pixels (PNG's getexif does)
        self.n_frames = int(getattr(im, "n_frames", 1) or 1)
        info = im.info
        self.loop = info.get("loop")
        self.default_image = bool(info.get("default_image", False))
        self.background = info.get("background")
        self.lossless = self.format == "WEBP" and _webp_is_lossless(self.path)
        self.compression = info.get("compression")
        if self.n_frames == 1:
            self.kind = "single"
        elif self.format == "MPO":
            self.kind = "views"
        elif self.format == "TIFF":
            self.kind = "pages"
        else:
            self.kind = "animation"
        self.frames_to_write = 1 if self.kind == "views" else self.n_frames
        sizes = [im.size]
        if self.kind == "pages":
            for i in range(1, self.n_frames):
                im.seek(i)
                sizes.append(im.size)
            im.seek(0)
        else:
            sizes *= self.frames_to_write
        _check_size(self.path, sizes, BYTES_PER_PIXEL_16_BIT if self._sixteen else BYTES_PER_PIXEL)
        self.sizes_wh = sizes
        self.exif = info.get("exif")
        self.icc_profile = sanitize_icc(info.get("icc_profile"), self.path)
        self.orientation = _orientation(im, self.path)

    def __enter__(self) -> "ImageReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._im.close()

    def frames(self) -> Iterator[tuple[torch.Tensor, ImageMeta]]:
        """Each frame to write, as upright uint8 RGB [3, H, W] and its :class:`ImageMeta`.

        Raises:
            ImageError: a frame does not decode (the message names the file and the frame).
        """
        if self.kind == "views":
            logger.warning("%s: MPO file with %d images: only the first (primary) image is anonymized and written, "
                           "as a plain JPEG; the other %d (further views or previews of the same scene) are "
                           "dropped", self.path, self.n_frames, self.n_frames - 1)
        for index in range(self.frames_to_write):
            yield self.read(index)

    def read(self, index: int = 0) -> tuple[torch.Tensor, ImageMeta]:
        """Decode frame ``index`` (frames of animations must be read in order)."""
        where = f"frame {index + 1} of {self.n_frames}: " if self.n_frames > 1 else ""
        try:
            if index:
                with _own_size_limit():
                    self._im.seek(index)
            im = self._im
            sixteen = self._sixteen and index == 0
            with _own_size_limit():
                im.load()
            meta = ImageMeta(mode=im.mode, format=self.format, exif=self.exif, icc_profile=self.icc_profile,
                             index=index, duration_ms=im.info.get("duration"))
            native16 = _read_16_bit(self.path, im) if sixteen and self.n_frames == 1 else None
            if sixteen and native16 is None:
                logger.warning("%s: %s16-bit samples are read as 8 bits (written back as 8-bit)", self.path, where)
            frame = _upright(im, self.orientation)
            tensor = _decode(frame, meta, native16, self.orientation)
        except ImageError:
            raise
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as e:
            raise ImageError(f"{self.path}: {where}corrupt or truncated image ({e})") from e
        return tensor, meta


def _webp_is_lossless(path: Path) -> bool:
    """Whether a WebP file's frames are VP8L (lossless) rather than VP8 (lossy)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b"VP8L" in head and b"VP8 " not in head


def _read_16_bit(path: Path, im: Image.Image) -> np.ndarray | None:
    """The 16-bit RGB(A) samples PIL cannot hold, via OpenCV; None when they do not match PIL's decode."""
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    channels = 4 if im.mode == "RGBA" else 3
    if data is None or data.dtype != np.uint16 or data.ndim != 3 or data.shape[2] != channels:
        return None
    data = data[..., [2, 1, 0, 3][:channels]]  # BGR(A) -> RGB(A)
    # PIL keeps the high byte: the two decodes must agree (same orientation, same samples).
    if data.shape[:2] != (im.size[1], im.size[0]) or not np.array_equal(data >> 8, np.asarray(im)):
        return None
    return np.ascontiguousarray(data)


def _transpose_array(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to [H, W] or [H, W, C] samples the way PIL transposes images."""
    if orientation not in _TRANSPOSE:
        return array
    if array.ndim == 2:
        return np.asarray(Image.fromarray(array).transpose(_TRANSPOSE[orientation]))
    return np.stack([_transpose_array(np.ascontiguousarray(array[..., c]), orientation)
                     for c in range(array.shape[2])], axis=2)


def _decode(im: Image.Image, meta: ImageMeta, native16: np.ndarray | None, orientation: int) -> torch.Tensor:
    """Fill ``meta`` from an upright frame and return its uint8 RGB [3, H, W]."""
    mode = im.mode
    meta.size_hw = (im.size[1], im.size[0])
    if native16 is not None:
        native = _transpose_array(native16, orientation)
        meta.mode = "RGBA;16" if native.shape[2] == 4 else "RGB;16"
        meta.native = native
        if native.shape[2] == 4:
            meta.alpha = native[..., 3].copy()
        rgb = np.asarray(im.convert("RGB"))  # PIL's high bytes = the 8-bit picture
    elif mode == "RGB":
        rgb = np.asarray(im)
    elif mode == "RGBA":
        rgba = np.asarray(im)
        meta.alpha = rgba[..., 3].copy()
        rgb = rgba[..., :3]
    elif mode == "P":
        indices = np.asarray(im)
        palette = np.array(im.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
        n = max(len(palette), int(indices.max()) + 1 if indices.size else 0)
        full = np.zeros((256, 3), np.uint8)
        full[: len(palette)] = palette
        alpha = _palette_alpha(im, n)
        meta.native, meta.palette, meta.palette_alpha = indices, full[:n].copy(), alpha
        rgb = full[indices]
        if alpha is not None:
            meta.alpha = alpha[indices]
    elif mode in ("L", "LA", "PA", "La"):
        if mode == "L":
            gray = np.asarray(im)
        else:
            rgba = np.asarray(im.convert("RGBA"))
            meta.alpha = rgba[..., 3].copy()
            rgb = rgba[..., :3]
            gray = None
        if gray is not None:
            rgb = np.repeat(gray[..., None], 3, axis=2)
    elif mode == "1":
        meta.native = np.asarray(im).copy()
        rgb = np.repeat((meta.native.astype(np.uint8) * 255)[..., None], 3, axis=2)
    elif mode == "CMYK":
        meta.native = np.asarray(im).copy()
        rgb = np.asarray(im.convert("RGB"))
    elif mode in _HIGH_BIT_MODES:
        raw = np.asarray(im)
        meta.native = raw.copy()
        if mode == "F":
            scaled = np.clip(raw, 0, 1) * 255 if raw.max() <= 1.0 else np.clip(raw, 0, 255)
        else:
            scaled = raw.astype(np.float64) / (257.0 if raw.max() > 255 else 1.0)
        gray = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:  # YCbCr, LAB, HSV, ...: written back as RGB
        logger.warning("%s mode is written back as RGB", mode)
        meta.mode = "RGB"
        rgb = np.asarray(im.convert("RGB"))
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy())  # [3, H, W], writable


def _palette_alpha(im: Image.Image, n: int) -> np.ndarray | None:
    """Alpha per palette entry (255 = opaque), or None when the palette has no transparency."""
    alpha = np.full(n, 255, np.uint8)
    transparency = im.info.get("transparency")
    if isinstance(transparency, int) and 0 <= transparency < n:
        alpha[transparency] = 0
    elif isinstance(transparency, (bytes, bytearray)):
        values = np.frombuffer(bytes(transparency[:n]), np.uint8)
        alpha[: len(values)] = values
    elif im.palette is not None and im.palette.mode == "RGBA":
        rgba = np.array(im.getpalette("RGBA"), np.uint8).reshape(-1, 4)[:n]
        alpha[: len(rgba)] = rgba[:, 3]
    return None if (alpha == 255).all() else alpha


def load_image(path: str | Path) -> tuple[torch.Tensor, ImageMeta]:
    """Read an image (its first frame) as upright uint8 RGB [3, H, W] plus what is needed to write it back.

    Raises:
        ImageError: missing, empty, truncated, corrupt, unsupported or oversized file.
    """
    with ImageReader(path) as reader:
        return reader.read(0)


def resize_max_res(image: torch.Tensor, max_res: int | None) -> torch.Tensor:
    """DeepPrivacy2's ``--max-res``: shrink so the longer side is at most ``max_res`` (PIL bilinear)."""
    if not max_res:
        return image
    h, w = image.shape[1:]
    f = max(w / max_res, h / max_res, 1)
    if f <= 1:
        return image
    size = (max(1, int(w / f)), max(1, int(h / f)))
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize(size, Image.BILINEAR)
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1).contiguous()


# --- writing ---------------------------------------------------------------------------------

def _changed(image: torch.Tensor, original: torch.Tensor) -> np.ndarray:
    """bool [H, W]: pixels whose RGB differs (one channel at a time: no [H, W, 3] temporary)."""
    changed = image[0] != original[0]
    changed |= image[1] != original[1]
    changed |= image[2] != original[2]
    return changed.numpy()


def _to_pil_rgb(image: torch.Tensor) -> Image.Image:
    """uint8 [3, H, W] -> PIL RGB without an [H, W, 3] copy (each channel plane is shared)."""
    planes = [Image.fromarray(image[c].contiguous().numpy(), "L") for c in range(3)]
    return Image.merge("RGB", planes)


def _rgb_array(image: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """uint8 [N, 3]: the RGB of the pixels in ``mask``."""
    return np.stack([image[c].numpy()[mask] for c in range(3)], axis=1)


def _nearest(colours: np.ndarray, palette: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Index (into the palette) of the nearest candidate entry for each colour [N, 3] (squared RGB distance)."""
    out = np.empty(len(colours), np.int64)
    pal = palette[candidates].astype(np.int32)  # [K, 3]
    step = max(1, (1 << 20) // max(1, len(candidates)))
    for start in range(0, len(colours), step):
        c = colours[start: start + step].astype(np.int32)
        d = ((c[:, None, :] - pal[None]) ** 2).sum(axis=2)  # [n, K]
        out[start: start + step] = candidates[d.argmin(axis=1)]
    return out


def _restore_palette(image: torch.Tensor, changed: np.ndarray, meta: ImageMeta,
                     add_colours: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Indices, palette and per-entry alpha for a P frame: untouched pixels keep their index.

    Changed pixels get the nearest colour among the entries of the same transparency as their
    original entry; first, when ``add_colours``, palette slots that no untouched pixel uses are
    filled with colours of the changed pixels (opaque pixels only).
    """
    indices = meta.native.copy()
    palette = meta.palette.copy()
    alpha = meta.palette_alpha.copy() if meta.palette_alpha is not None else None
    if not changed.any():
        return indices, palette, alpha
    colours = _rgb_array(image, changed)  # [N, 3]
    before = indices[changed]
    entry_alpha = alpha if alpha is not None else np.full(len(palette), 255, np.uint8)
    if add_colours:
        used = np.bincount(indices[~changed], minlength=256)[:256] > 0
        free = [i for i in range(256) if not used[i] and (i >= len(palette) or entry_alpha[i] == 255)]
        opaque = entry_alpha[before] == 255
        if free and opaque.any():
            unique = np.unique(colours[opaque], axis=0)
            if len(unique) > len(free):  # a few representative colours of the changed pixels
                sample = Image.fromarray(unique[None].astype(np.uint8), "RGB")
                reduced = sample.quantize(colors=len(free), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
                unique = np.array(reduced.getpalette("RGB"), np.uint8).reshape(-1, 3)[: len(free)]
            size = max(len(palette), max(free[: len(unique)]) + 1)
            grown = np.zeros((size, 3), np.uint8)
            grown[: len(palette)] = palette
            palette = grown
            if alpha is not None:
                alpha = np.concatenate([alpha, np.full(size - len(alpha), 255, np.uint8)])
            entry_alpha = np.concatenate([entry_alpha, np.full(size - len(entry_alpha), 255, np.uint8)])
            for slot, colour in zip(free, unique):
                palette[slot] = colour
                entry_alpha[slot] = 255
                if alpha is not None:
                    alpha[slot] = 255
    new = np.empty(len(colours), np.int64)
    for value in np.unique(entry_alpha[before]):
        group = entry_alpha[before] == value
        candidates = np.flatnonzero(entry_alpha == value)
        new[group] = _nearest(colours[group], palette, candidates)
    indices[changed] = new.astype(np.uint8)
    return indices, palette, alpha


def _restore_mode(image: torch.Tensor, original: torch.Tensor | None, meta: ImageMeta, *,
                  add_colours: bool = True) -> Image.Image | np.ndarray:
    """The frame in the input's mode; untouched pixels keep their original samples.

    Returns a PIL image, or uint16 [H, W, C] for 16-bit RGB(A), which PIL cannot hold.
    ``original`` is the frame as processed (None or another size: ``--max-res`` resampled
    everything, so samples are derived from the result).
    """
    # Untouched pixels can be told only when nothing was resampled (--max-res shrinks before processing).
    same = (original is not None and tuple(original.shape) == tuple(image.shape)
            and meta.size_hw in (None, tuple(image.shape[1:])))
    mode = meta.mode
    if mode in ("RGB", "RGBA", "L", "LA", "PA", "La") or (meta.native is None and mode != "P"):
        out = _to_pil_rgb(image)
        if meta.alpha is not None and meta.alpha.dtype == np.uint8:
            alpha = Image.fromarray(meta.alpha)
            out.putalpha(alpha if same else alpha.resize(out.size, Image.BILINEAR))  # --max-res: resized like RGB
            return out.convert("LA") if mode == "LA" else out
        return out.convert("L") if mode in ("L", "LA") else out
    if not same:  # resampled: nothing is untouched; keep the mode where a conversion exists
        out = _to_pil_rgb(image)
        if mode in _HIGH_BIT_MODES:
            logger.warning("the image was resampled (--max-res): its %s samples are written as 8-bit", mode)
        if mode == "P":
            pal = Image.new("P", (1, 1))
            pal.putpalette(meta.palette.flatten().tolist())
            return out.quantize(palette=pal, dither=Image.Dither.NONE)
        if mode in ("CMYK", "1"):
            return out.convert(mode)
        if mode in ("RGB;16", "RGBA;16"):
            return out
        return out.convert("L")
    changed = _changed(image, original)
    if mode == "P":
        indices, palette, alpha = _restore_palette(image, changed, meta, add_colours)
        out = Image.fromarray(indices, "P")
        out.putpalette(palette.flatten().tolist())
        if alpha is not None:
            out.info["transparency"] = bytes(alpha.tolist())
        return out
    native = meta.native.copy()
    if not changed.any():
        pass
    elif mode in ("RGB;16", "RGBA;16"):
        native[changed, :3] = _rgb_array(image, changed).astype(np.uint16) * 257
    elif mode == "CMYK":
        colours = _rgb_array(image, changed)
        native[changed] = np.asarray(Image.fromarray(colours[None], "RGB").convert("CMYK"))[0]
    else:  # "1" and greyscale samples
        gray = _rgb_array(image, changed).mean(axis=1)
        if mode == "1":
            native[changed] = gray >= 128
        elif mode == "F":
            native[changed] = gray / 255.0 if meta.native.max() <= 1.0 else gray
        else:
            factor = 257 if meta.native.max() > 255 else 1
            native[changed] = np.round(gray * factor).astype(native.dtype)
    if mode in ("RGB;16", "RGBA;16"):
        return native
    if mode in ("F", "CMYK"):
        return Image.fromarray(native, mode)
    return Image.fromarray(native)  # bool -> "1" (with an explicit "1", PIL reads bools as packed bits)


_FORMAT_BY_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                     ".tif": "TIFF", ".tiff": "TIFF", ".mpo": "JPEG"}  # an MPO is written as its first image
_MODES_BY_FORMAT = {
    "JPEG": {"RGB", "L", "CMYK"},
    "PNG": {"RGB", "RGBA", "L", "LA", "P", "I", "I;16", "1"},
    "BMP": {"RGB", "L", "P", "1"},
    "WEBP": {"RGB", "RGBA"},
    "TIFF": {"RGB", "RGBA", "L", "LA", "P", "I", "I;16", "F", "CMYK", "1"},
}
_MULTI_FRAME_FORMATS = ("PNG", "WEBP", "TIFF")
_LOSSLESS_TIFF = {"raw", "tiff_lzw", "tiff_deflate", "tiff_adobe_deflate", "packbits", "group3", "group4"}
_COLOUR_SPACE = {"RGB": "RGB", "RGBA": "RGB", "P": "RGB", "CMYK": "CMYK"}


def atomic_write_path(path: Path) -> Path:
    """A temporary sibling of ``path`` with the same suffix (renamed over ``path`` when complete)."""
    fd, tmp = partial_sibling(path, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    os.close(fd)
    return tmp


def _output_format(path: Path) -> str:
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output suffix {path.suffix!r} "
                         f"(expected one of {', '.join(IMAGE_SUFFIXES)})")
    return fmt


class ImageWriter:
    """Collects the anonymized frames of one file and writes them atomically (temporary + rename).

    Args:
        path: output file; the format follows its suffix.
        reader: the input (animation settings, WebP losslessness, TIFF compression), or None.
        keep_metadata: write the input's EXIF back, sanitized (:func:`~dp2.io.metadata.sanitize_exif`).
        quality: JPEG and lossy WebP quality.

    Raises:
        ImageError: unsupported suffix, missing folder, or several frames for a one-frame format
            (raised here, before any frame is processed).
    """

    def __init__(self, path: str | Path, reader: ImageReader | None = None, *, keep_metadata: bool = False,
                 quality: int = 95) -> None:
        self.path = Path(path)
        self.format = _output_format(self.path)
        if not self.path.parent.is_dir():
            raise ImageError(f"{self.path}: output folder {self.path.parent} does not exist")
        self.reader = reader
        self.keep_metadata = keep_metadata
        self.quality = quality
        n = reader.frames_to_write if reader is not None else 1
        if n > 1 and self.format not in _MULTI_FRAME_FORMATS:
            raise ImageError(f"{self.path}: the input has {n} {'pages' if reader.kind == 'pages' else 'frames'}; "
                             f"{self.format} holds one image, so write to .png, .webp or .tif (every frame is "
                             "anonymized and kept)")
        if n > 1 and self.format != "TIFF" and len(set(reader.sizes_wh)) > 1:
            raise ImageError(f"{self.path}: the input's pages differ in size; only TIFF (.tif) can hold them")
        self._frames: list[Image.Image | np.ndarray] = []
        self._metas: list[ImageMeta] = []

    def add(self, image: torch.Tensor, meta: ImageMeta | None = None, original: torch.Tensor | None = None) -> None:
        """Add the next anonymized frame.

        Args:
            image: uint8 [3, H, W] result.
            meta: from the reader; None writes plain RGB.
            original: the frame as processed (same size as ``image``), so untouched pixels keep
                their original samples (palette indices, 16-bit values, ...).
        """
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
        image = image.cpu()
        if meta is None:
            frame = _to_pil_rgb(image)
        else:
            multi = self.reader is not None and self.reader.frames_to_write > 1
            frame = _restore_mode(image, None if original is None else original.cpu(), meta, add_colours=not multi)
        self._frames.append(frame)
        self._metas.append(meta)

    def close(self) -> None:
        """Write every frame added; the output appears only when complete."""
        if not self._frames:
            raise ValueError(f"{self.path}: no frames to write")
        frames = [self._fit(f, m) for f, m in zip(self._frames, self._metas)]
        meta = self._metas[0]
        params = self._params(frames[0], meta)
        try:
            tmp = atomic_write_path(self.path)
        except OSError as e:
            raise ImageError(f"{self.path}: cannot write to {self.path.parent} ({e.strerror or e})") from e
        try:
            if isinstance(frames[0], np.ndarray):
                tmp.write_bytes(_encode_16_bit(frames[0], self.format, params, self.path))
            elif len(frames) == 1:
                frames[0].save(tmp, format=self.format, **params)
            else:
                frames[0].save(tmp, format=self.format, save_all=True, append_images=frames[1:], **params)
            os.replace(tmp, self.path)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise ImageError(f"{self.path}: cannot write image ({e.strerror or e})") from e
            raise
        finally:
            self._frames.clear()

    def _fit(self, frame: Image.Image | np.ndarray, meta: ImageMeta | None) -> Image.Image | np.ndarray:
        """Convert a frame to a mode the output format stores (warning where something is lost)."""
        fmt = self.format
        if isinstance(frame, np.ndarray):  # 16-bit RGB(A)
            if fmt in ("PNG", "TIFF") and len(self._frames) == 1:
                return frame
            logger.warning("%s: %s stores 8 bits per sample here; writing the 16-bit input as 8-bit", self.path, fmt)
            mode = "RGBA" if frame.shape[2] == 4 else "RGB"
            return Image.fromarray((frame >> 8).astype(np.uint8), mode)
        if len(self._frames) > 1 and fmt == "PNG":
            # APNG frames share the first frame's mode (and palette): keep P only when all agree.
            first = self._frames[0]
            if not all(isinstance(f, Image.Image) and f.mode == first.mode for f in self._frames) or (
                    first.mode == "P" and any(f.getpalette() != first.getpalette() for f in self._frames)):
                return frame.convert("RGBA" if any("A" in f.mode or "transparency" in f.info
                                                   for f in self._frames) else "RGB")
        if frame.mode in _MODES_BY_FORMAT[fmt]:
            return frame
        has_alpha = "A" in frame.mode or "transparency" in frame.info
        fallback = "RGBA" if has_alpha and "RGBA" in _MODES_BY_FORMAT[fmt] else "RGB"
        if has_alpha and fallback == "RGB":
            logger.warning("%s: %s cannot store transparency; writing without alpha", self.path, fmt)
        if frame.mode in ("I;16", "I", "F") and "I;16" not in _MODES_BY_FORMAT[fmt]:
            logger.warning("%s: %s stores 8 bits per sample; writing the %s input as 8-bit", self.path, fmt, frame.mode)
            array = np.asarray(frame).astype(np.float64)
            scale = 1 / 257 if array.max() > 255 else (255.0 if frame.mode == "F" and array.max() <= 1 else 1)
            return Image.fromarray(np.clip(np.round(array * scale), 0, 255).astype(np.uint8)).convert(fallback)
        return frame.convert(fallback)

    def _params(self, frame, meta: ImageMeta | None) -> dict:
        fmt, params = self.format, {}
        mode = "RGB" if isinstance(frame, np.ndarray) else frame.mode
        if meta is not None and meta.icc_profile and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
            wanted = _COLOUR_SPACE.get(mode, "GRAY")
            have = icc_colour_space(meta.icc_profile)
            if have == wanted:
                params["icc_profile"] = meta.icc_profile
            else:
                logger.warning("%s: dropping the %s ICC profile: the image is written as %s", self.path, have, mode)
        if self.keep_metadata and meta is not None and meta.exif:
            exif = sanitize_exif(meta.exif, self.reader.path if self.reader is not None else self.path)
            if exif:
                params["exif"] = exif
        if not isinstance(frame, Image.Image) or "transparency" not in frame.info:
            pass
        elif fmt in ("PNG", "TIFF", "BMP"):
            params["transparency"] = frame.info["transparency"]
        if fmt == "JPEG":
            params.update(quality=self.quality, subsampling=0 if self.quality >= 90 else -1)
        elif fmt == "WEBP":
            lossless = self.reader is not None and self.reader.lossless
            # exact: keep the colour under transparent pixels (libwebp would otherwise alter it)
            params.update(lossless=True, exact=True) if lossless else params.update(quality=self.quality)
        elif fmt == "TIFF" and self.reader is not None and self.reader.compression in _LOSSLESS_TIFF:
            fax = self.reader.compression in ("group3", "group4")  # bilevel pages only
            if not fax or all(isinstance(f, Image.Image) and f.mode == "1" for f in self._frames):
                params["compression"] = self.reader.compression
        if len(self._metas) > 1 and fmt in ("PNG", "WEBP") and self.reader is not None:
            durations = [m.duration_ms for m in self._metas]
            if self.reader.default_image and fmt == "PNG":
                # The first image is shown only where APNG is not understood; durations are
                # those of the animation frames after it.
                params["default_image"] = True
                durations = durations[1:]
            if all(d is not None for d in durations):
                params["duration"] = [int(round(d)) if fmt == "WEBP" else d for d in durations]
            params["loop"] = self.reader.loop if self.reader.loop is not None else 0
            if fmt == "WEBP" and isinstance(self.reader.background, tuple):
                params["background"] = self.reader.background
        elif len(self._metas) > 1 and fmt == "TIFF" and self.reader is not None and self.reader.kind == "animation":
            logger.warning("%s: TIFF pages have no frame durations; the animation's timing is not kept", self.path)
        return params


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _encode_16_bit(samples: np.ndarray, fmt: str, params: dict, path: Path) -> bytes:
    """16-bit RGB(A) [H, W, C] as PNG or TIFF bytes (OpenCV), with the ICC profile and EXIF for PNG."""
    import cv2

    bgr = samples[..., [2, 1, 0, 3][: samples.shape[2]]]
    ok, encoded = cv2.imencode(".png" if fmt == "PNG" else ".tif", np.ascontiguousarray(bgr))
    if not ok:
        raise ImageError(f"{path}: cannot encode 16-bit {fmt}")
    data = encoded.tobytes()
    if fmt == "TIFF":
        if params.get("icc_profile") or params.get("exif"):
            logger.warning("%s: 16-bit TIFF is written without its ICC profile and EXIF", path)
        return data
    extra = b""
    if params.get("icc_profile"):
        extra += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(params["icc_profile"]))
    if params.get("exif"):
        exif = params["exif"]
        extra += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return data[:ihdr_end] + extra + data[ihdr_end:]


def save_image(path: str | Path, image: torch.Tensor, meta: ImageMeta | None = None, *,
               original: torch.Tensor | None = None, keep_metadata: bool = False, quality: int = 95) -> None:
    """Write one uint8 RGB [3, H, W] frame atomically (temporary file + rename).

    Args:
        path: output file; the format follows its suffix.
        image: uint8 [3, H, W] result.
        meta: from :func:`load_image`; None writes plain RGB.
        original: the processed input (same size as ``image``), so pixels that were not changed
            keep their original samples.
        keep_metadata: write the input's EXIF back, sanitized.
        quality: JPEG/WebP quality.

    Raises:
        ImageError: unsupported suffix, missing or read-only folder.
    """
    writer = ImageWriter(path, keep_metadata=keep_metadata, quality=quality)
    writer.add(image, meta, original)
    writer.close()
