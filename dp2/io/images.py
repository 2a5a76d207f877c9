"""Reading and writing still images with PIL, keeping what can be kept.

Processing always happens on uint8 RGB; :class:`ImageMeta` remembers what the
file had (mode, alpha, 16-bit samples, metadata) so the written image keeps the
input's mode and alpha where the output format allows it. EXIF orientation is
applied on read and the output is written upright. Metadata (EXIF including
GPS, XMP, comments, text chunks) is dropped unless ``keep_metadata``; the ICC
colour profile is always kept because it only describes colours.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import partial_sibling

__all__ = ["IMAGE_SUFFIXES", "ImageError", "ImageMeta", "load_image", "save_image", "resize_max_res", "atomic_write_path"]

logger = logging.getLogger(__name__)

from .kinds import IMAGE_SUFFIXES  # noqa: E402 (no torch there: the CLI checks suffixes early)
MAX_PIXELS = 20_000 * 12_000  # 240 MP: far beyond any camera, well below "20000x20000" bombs


class ImageError(ValueError):
    """An image file cannot be read or written; the message names the file."""


@dataclass
class ImageMeta:
    """What :func:`load_image` learnt about a file, used by :func:`save_image`."""

    mode: str
    format: str | None
    alpha: np.ndarray | None = None  # uint8 [H, W] (or uint16 for 16-bit), upright
    high_bit: np.ndarray | None = None  # original 16-bit/float samples [H, W] or [H, W, C], upright
    exif: bytes | None = None
    icc_profile: bytes | None = None
    extra: dict = field(default_factory=dict)


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes), expected an image")
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{path}: {w}x{h} pixels is larger than the {MAX_PIXELS // 1_000_000} MP limit")
            if w < 1 or h < 1:
                raise ImageError(f"{path}: image has no pixels ({w}x{h})")
            im.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: image is too large ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{path}: not a readable image (expected one of {', '.join(IMAGE_SUFFIXES)})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from e
    finally:
        Image.MAX_IMAGE_PIXELS = old
    return im


def load_image(path: str | Path) -> tuple[torch.Tensor, ImageMeta]:
    """Read an image as upright uint8 RGB [3, H, W] plus what is needed to write it back.

    Raises:
        ImageError: missing, empty, truncated, corrupt, unsupported or oversized file.
    """
    path = Path(path)
    im = _open(path)
    meta = ImageMeta(mode=im.mode, format=im.format, exif=im.info.get("exif"), icc_profile=im.info.get("icc_profile"))
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # a broken EXIF block must not stop anonymization
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", path, e)
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raw = np.array(im)
        meta.high_bit = raw
        if im.mode == "F":
            scaled = np.clip(raw, 0, 1) * 255 if raw.max() <= 1.0 else np.clip(raw, 0, 255)
        else:
            scaled = raw.astype(np.float64) / (257.0 if raw.max() > 255 else 1.0)
        gray = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        if im.mode == "RGBA":
            meta.alpha = np.array(im.getchannel("A"))
        rgb = np.array(im.convert("RGB"))
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()
    return tensor, meta


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


def _restore_mode(rgb: np.ndarray, original: np.ndarray, meta: ImageMeta, resized: bool) -> Image.Image:
    """Turn processed RGB back into the input's mode where possible."""
    if meta.high_bit is not None and not resized:
        # Only pixels that anonymization changed get new (8-bit derived) values.
        hb = meta.high_bit
        changed = np.any(rgb != original, axis=2)
        gray = rgb.mean(axis=2)
        if hb.dtype == np.float32 or meta.mode == "F":
            new = np.where(changed, gray / 255.0 if hb.max() <= 1.0 else gray, hb).astype(hb.dtype)
            return Image.fromarray(new, mode="F")
        factor = 257 if hb.max() > 255 else 1
        new = np.where(changed, np.round(gray * factor), hb).astype(hb.dtype)
        return Image.fromarray(new)
    out = Image.fromarray(rgb, "RGB")
    if meta.alpha is not None and not resized:
        out.putalpha(Image.fromarray(meta.alpha))
        return out if meta.mode in ("RGBA", "P", "PA") else out.convert(meta.mode if meta.mode in ("LA",) else "RGBA")
    if meta.mode in ("L", "1"):
        return out.convert(meta.mode)
    if meta.mode == "P":
        return out.quantize(colors=256, dither=Image.Dither.NONE)
    if meta.mode == "CMYK":
        return out.convert("CMYK")
    return out


_FORMAT_BY_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                     ".tif": "TIFF", ".tiff": "TIFF"}
_MODES_BY_FORMAT = {
    "JPEG": {"RGB", "L", "CMYK"},
    "PNG": {"RGB", "RGBA", "L", "LA", "P", "I", "I;16", "1"},
    "BMP": {"RGB", "L", "P", "1"},
    "WEBP": {"RGB", "RGBA"},
    "TIFF": {"RGB", "RGBA", "L", "LA", "P", "I", "I;16", "F", "CMYK", "1"},
}


def atomic_write_path(path: Path) -> Path:
    """A temporary sibling of ``path`` with the same suffix (renamed over ``path`` when complete)."""
    fd, tmp = partial_sibling(path, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    os.close(fd)
    return tmp


def save_image(path: str | Path, image: torch.Tensor, meta: ImageMeta | None = None, *,
               original: torch.Tensor | None = None, keep_metadata: bool = False, quality: int = 95) -> None:
    """Write uint8 RGB [3, H, W] atomically (temporary file + rename).

    Args:
        path: output file; the format follows its suffix.
        image: uint8 [3, H, W] result.
        meta: from :func:`load_image`; None writes plain RGB.
        original: the processed input (same size as ``image``), to restore 16-bit samples of
            pixels that were not changed.
        keep_metadata: write the input's EXIF (orientation reset to upright) back.
        quality: JPEG/WebP quality.

    Raises:
        ImageError: unsupported suffix, missing or read-only folder.
    """
    path = Path(path)
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unsupported output suffix {path.suffix!r} (expected one of {', '.join(IMAGE_SUFFIXES)})")
    if not path.parent.is_dir():
        raise ImageError(f"{path}: output folder {path.parent} does not exist")
    rgb = image.permute(1, 2, 0).cpu().numpy()
    if meta is None:
        pil = Image.fromarray(rgb, "RGB")
    else:
        resized = original is None or tuple(original.shape) != tuple(image.shape)
        orig_np = None if original is None else original.permute(1, 2, 0).cpu().numpy()
        pil = _restore_mode(rgb, orig_np if orig_np is not None else rgb, meta, resized)
    if pil.mode not in _MODES_BY_FORMAT[fmt]:
        fallback = "RGBA" if "A" in pil.mode and "RGBA" in _MODES_BY_FORMAT[fmt] else "RGB"
        if "A" in pil.mode and fallback == "RGB":
            logger.warning("%s: %s cannot store transparency; writing without alpha", path, fmt)
        pil = pil.convert(fallback)
    params: dict = {}
    if meta is not None and meta.icc_profile and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        params["icc_profile"] = meta.icc_profile
    if keep_metadata and meta is not None and meta.exif:
        exif = Image.Exif()
        exif.load(meta.exif)
        exif[0x0112] = 1  # pixels are written upright
        params["exif"] = exif.tobytes()
    if fmt == "JPEG":
        params.update(quality=quality, subsampling=0 if quality >= 90 else -1)
    elif fmt == "WEBP":
        params.update(quality=quality)
    try:
        tmp = atomic_write_path(path)
    except OSError as e:
        raise ImageError(f"{path}: cannot write to {path.parent} ({e.strerror or e})") from e
    try:
        pil.save(tmp, format=fmt, **params)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ImageError(f"{path}: cannot write image ({e.strerror or e})") from e
        raise
