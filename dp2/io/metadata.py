"""Metadata that may travel from an input image to its anonymized output, made safe first.

Metadata can carry the very pixels anonymization removes: cameras store preview JPEGs in the
EXIF MakerNote and the EXIF thumbnail (IFD1), and any blob (an ICC profile, a comment) can have
a whole image appended to it. So nothing is copied as it arrived:

- ICC colour profiles (:func:`sanitize_icc`) are parsed and rebuilt from their header and the
  data of their registered tags only. Bytes past the declared size, bytes between tags and
  private (unregistered) tags are dropped; a profile that does not parse is dropped.
- EXIF (:func:`sanitize_exif`, only with ``--keep-metadata``) is rebuilt from an allow-list:
  known tags of IFD0, the Exif and the GPS IFD, with values that are numbers, short byte strings
  (at most :data:`MAX_EXIF_BYTES`) or text (longer text only when it reads as prose, never
  base64-like runs). The thumbnail IFD (IFD1), the MakerNote, the Interop IFD, embedded
  XMP/IPTC/Photoshop/ICC blocks, strip and tile pointers, image-structure tags and any value
  that holds an image signature are dropped.
- XMP, IPTC, comments and PNG text are never written: XMP can hold base64 thumbnails
  (``xmpGImg``) and named face regions (``mwg-rs``), and none of them is needed to show the
  picture.

Functions here take and return bytes; they log what they drop and never raise on bad input.
"""
from __future__ import annotations

import hashlib
import logging
import struct
import warnings

__all__ = ["MAX_EXIF_BYTES", "MAX_EXIF_TEXT", "IMAGE_SIGNATURES", "contains_image", "icc_colour_space", "sanitize_exif",
           "sanitize_icc"]

logger = logging.getLogger(__name__)

# Start of an embedded JPEG, PNG, GIF, WebP/RIFF, TIFF, JPEG 2000 or HEIF/AVIF ("ftyp") file.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP",
                    b"ftyp")
MAX_EXIF_BYTES = 256  # longest byte value (and encoded-looking text) kept in EXIF; a preview needs far more
MAX_EXIF_TEXT = 4096  # longest text kept when it reads as prose (a caption, a copyright notice)

_ICC_HEADER = 128
# Tag signatures registered in ICC.1 (v2 and v4 profiles); private tags are dropped.
_ICC_TAGS = {
    b"A2B0", b"A2B1", b"A2B2", b"A2B3", b"A2M0", b"B2A0", b"B2A1", b"B2A2", b"B2A3", b"B2D0", b"B2D1", b"B2D2",
    b"B2D3", b"D2B0", b"D2B1", b"D2B2", b"D2B3", b"bXYZ", b"bTRC", b"bkpt", b"bfd ", b"calt", b"chad", b"chrm",
    b"cicp", b"clro", b"clrt", b"clot", b"ciis", b"cprt", b"crdi", b"desc", b"devs", b"dmnd", b"dmdd", b"gamt",
    b"gTRC", b"gXYZ", b"kTRC", b"lumi", b"meas", b"meta", b"ncl2", b"ncol", b"pre0", b"pre1", b"pre2", b"ps2i",
    b"ps2s", b"psd0", b"psd1", b"psd2", b"psd3", b"psid", b"pseq", b"resp", b"rig0", b"rig2", b"rTRC", b"rXYZ",
    b"scrd", b"scrn", b"targ", b"tech", b"vued", b"view", b"wtpt",
}


def contains_image(data: bytes) -> bool:
    """Whether ``data`` holds the signature of an image file anywhere (a preview hidden in a blob)."""
    return any(sig in data for sig in IMAGE_SIGNATURES)


def icc_colour_space(profile: bytes) -> str | None:
    """The data colour space of a (sanitized) ICC profile: ``"RGB"``, ``"GRAY"``, ``"CMYK"``, ... or None."""
    if len(profile) < _ICC_HEADER:
        return None
    return profile[16:20].decode("latin-1").strip() or None


def sanitize_icc(data: bytes | None, source: object = "") -> bytes | None:
    """A clean copy of an ICC profile, or None (with a warning) when it does not parse.

    The profile is rebuilt: the 128-byte header, a tag table of the registered tags and, for
    each, exactly the bytes it points to (4-byte aligned, shared data kept shared). The
    profile ID (an MD5 of the profile) is recomputed when the original had one.

    Args:
        data: the profile as found in the file (``im.info["icc_profile"]``).
        source: what to name in the warning (the file).
    """
    if not data:
        return None
    try:
        return _rebuild_icc(bytes(data))
    except ValueError as e:
        logger.warning("%s: dropping the ICC colour profile: %s", source, e)
        return None


def _rebuild_icc(data: bytes) -> bytes:
    if len(data) < _ICC_HEADER + 4:
        raise ValueError(f"{len(data)} bytes is shorter than an ICC header and tag count")
    size = struct.unpack(">I", data[:4])[0]
    if data[36:40] != b"acsp":
        raise ValueError("no 'acsp' signature (not an ICC profile)")
    if not _ICC_HEADER + 4 <= size <= len(data):
        raise ValueError(f"declared size {size} does not fit the {len(data)} bytes present")
    count = struct.unpack(">I", data[128:132])[0]
    table_end = _ICC_HEADER + 4 + 12 * count
    if table_end > size:
        raise ValueError(f"a tag table of {count} tags does not fit in {size} bytes")
    tags = []
    for i in range(count):
        sig, offset, length = struct.unpack(">4sII", data[132 + 12 * i: 144 + 12 * i])
        if offset < table_end or length < 8 or offset + length > size:
            raise ValueError(f"tag {sig!r} at {offset} (+{length} bytes) lies outside the profile's tag data")
        tags.append((sig, offset, length))
    dropped = sorted({sig.decode("latin-1") for sig, _, _ in tags if sig not in _ICC_TAGS})
    tags = [t for t in tags if t[0] in _ICC_TAGS]
    if dropped:
        logger.info("ICC profile: dropping private tags %s", ", ".join(dropped))
    if len(data) > size:
        logger.info("ICC profile: dropping %d bytes after its declared size", len(data) - size)

    new_table_end = _ICC_HEADER + 4 + 12 * len(tags)
    blobs = bytearray()
    placed: dict[tuple[int, int], int] = {}
    entries = []
    for sig, offset, length in tags:
        if (offset, length) not in placed:
            placed[(offset, length)] = new_table_end + len(blobs)
            blobs += data[offset: offset + length]
            blobs += b"\x00" * (-len(blobs) % 4)
        entries.append(struct.pack(">4sII", sig, placed[(offset, length)], length))
    header = bytearray(data[:_ICC_HEADER])
    total = new_table_end + len(blobs)
    header[:4] = struct.pack(">I", total)
    profile = header + struct.pack(">I", len(tags)) + b"".join(entries) + blobs
    if any(data[84:100]):  # an ID was set: recompute it (MD5 with flags, intent and ID zeroed)
        scratch = bytearray(profile)
        scratch[44:48] = scratch[64:68] = b"\x00" * 4
        scratch[84:100] = b"\x00" * 16
        profile[84:100] = hashlib.md5(scratch).digest()
    return bytes(profile)


# --- EXIF ------------------------------------------------------------------------------------

_IFD_EXIF, _IFD_GPS, _IFD_INTEROP, _IFD1 = 0x8769, 0x8825, 0xA005, -1  # PIL's ExifTags.IFD
# Never kept: pointers to image data (strips, tiles, thumbnails, sub-images), blobs of other
# metadata (XMP, IPTC, Photoshop resources, ICC), camera-private data and padding.
_EXIF_DROP = {
    0x0100, 0x0101, 0x0102, 0x0103, 0x0106, 0x0111, 0x0115, 0x0116, 0x0117, 0x011C, 0x0142, 0x0143, 0x0144,
    0x0145, 0x014A, 0x0201, 0x0202, 0x02BC, 0x83BB, 0x8649, 0x8773, 0x927C, 0xC4A5, 0xEA1C, 0xEA1D,
    0x0112,  # orientation: set to 1 (the pixels are written upright)
}


def _known_tags() -> tuple[set[int], set[int]]:
    from PIL import ExifTags

    return set(ExifTags.TAGS), set(ExifTags.GPSTAGS)


def _safe_value(value):
    """The value when it is plain data (numbers, short text/bytes without an image), else None."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) if len(value) <= MAX_EXIF_BYTES and not contains_image(bytes(value)) else None
    if isinstance(value, str):
        if contains_image(value.encode("latin-1", "replace")) or len(value) > MAX_EXIF_TEXT:
            return None
        # Longer text must read as prose: base64 or hex (an encoded preview) has no spaces.
        return value if len(value) <= MAX_EXIF_BYTES or value.count(" ") * 20 >= len(value) else None
    if isinstance(value, tuple):
        if len(value) > MAX_EXIF_BYTES:
            return None
        items = [_safe_value(v) for v in value]
        return None if any(i is None for i in items) else tuple(items)
    if isinstance(value, (int, float)):
        return value
    from PIL.TiffImagePlugin import IFDRational

    return value if isinstance(value, IFDRational) else None


def sanitize_exif(data: bytes | None, source: object = "") -> bytes | None:
    """EXIF rebuilt from an allow-list (see the module docstring), orientation 1; None if nothing is left.

    Args:
        data: EXIF as PIL reads it (``im.info["exif"]``, with or without the ``Exif\\0\\0`` prefix).
        source: what to name in log messages (the file).
    """
    if not data:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about corrupt EXIF; what is unreadable is dropped
        return _sanitize_exif(data, source)


def _sanitize_exif(data: bytes, source: object) -> bytes | None:
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(bytes(data))
        known, known_gps = _known_tags()
        out = Image.Exif()
        dropped: list[str] = []

        def copy(items, allowed: set[int], target, where: str) -> None:
            for tag, value in items:
                if tag in (_IFD_EXIF, _IFD_GPS, _IFD_INTEROP):
                    continue
                safe = _safe_value(value) if tag in allowed and tag not in _EXIF_DROP else None
                if safe is None:
                    if tag != 0x0112:
                        dropped.append(f"{where}:0x{tag:04X}")
                    continue
                target[tag] = safe

        copy(exif.items(), known, out, "IFD0")
        for ifd_tag, allowed, name in ((_IFD_EXIF, known, "Exif"), (_IFD_GPS, known_gps, "GPS")):
            sub = exif.get_ifd(ifd_tag)
            if sub:
                clean: dict = {}
                copy(sub.items(), allowed, clean, name)
                if clean:
                    out[ifd_tag] = clean
        interop = exif.get_ifd(_IFD_EXIF).get(_IFD_INTEROP) if exif.get_ifd(_IFD_EXIF) else None
        if isinstance(interop, dict):
            dropped.append("Interop")
        if exif.get_ifd(_IFD1):
            dropped.append("IFD1 (thumbnail)")
        out[0x0112] = 1
        result = out.tobytes()
    except Exception as e:  # a broken EXIF block is dropped, never copied
        logger.warning("%s: dropping unreadable EXIF (%s)", source, e)
        return None
    if dropped:
        logger.info("%s: EXIF kept without %s", source, ", ".join(dropped))
    body = result[6:] if result.startswith(b"Exif\x00\x00") else result
    if contains_image(body[8:]):  # after the TIFF header, which is itself a TIFF signature
        logger.warning("%s: dropping EXIF: an image signature remains after cleaning", source)
        return None
    return result
