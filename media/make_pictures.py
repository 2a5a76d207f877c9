"""Make the README's before/after pictures: every classic filter and ``--vd`` on two images.

The images are the bundled ``media/astronaut.png`` (public domain) and a generated picture of
several faces (copies of the astronaut's face at other sizes, mirrored and tinted, on a
gradient), so no corpus file is copied. Offline: the classic configs use the bundled detector.

    python media/make_pictures.py          # writes media/<image>_<filter>.png (small palette PNGs)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MEDIA = Path(__file__).resolve().parent
sys.path.insert(0, str(MEDIA.parent))  # run from a checkout without installing

FILTERS = ("gaussian", "gaussian_ellipse", "pixelation8", "pixelation16", "maskout", "maskout_black")
WIDTH = 240  # pixels across each picture in the README
FACE_BOX = (150, 40, 290, 200)  # the astronaut's face in media/astronaut.png (x0, y0, x1, y1)


def many_faces() -> np.ndarray:
    """A 480x320 RGB picture with four faces of different sizes (from the astronaut photo)."""
    astronaut = Image.open(MEDIA / "astronaut.png").convert("RGB")
    face = astronaut.crop(FACE_BOX)
    y, x = np.mgrid[0:320, 0:480]
    canvas = Image.fromarray(np.stack([60 + x * 120 // 480, 90 + y * 80 // 320, 140 - x * 60 // 480],
                                      axis=2).astype(np.uint8))
    placements = [((20, 60), 1.0, False, (1.0, 1.0, 1.0)), ((190, 40), 0.75, True, (1.1, 0.95, 0.85)),
                  ((320, 150), 0.6, False, (0.85, 0.95, 1.1)), ((150, 200), 0.5, True, (1.0, 1.05, 0.9))]
    for (left, top), scale, mirror, tint in placements:
        part = face.resize((int(face.width * scale), int(face.height * scale)), Image.BICUBIC)
        if mirror:
            part = ImageOps.mirror(part)
        array = np.clip(np.asarray(part, np.float32) * np.array(tint, np.float32), 0, 255).astype(np.uint8)
        canvas.paste(Image.fromarray(array), (left, top))
    return np.asarray(canvas)


def save_small(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array)
    image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


def main() -> None:
    import torch

    from dp2.api import anonymize_array, build_anonymizer
    from dp2.visualize import draw_detections

    images = {"astronaut": np.array(Image.open(MEDIA / "astronaut.png").convert("RGB")), "faces": np.array(many_faces())}
    anonymizers = {name: build_anonymizer(f"traditional/face/{name}") for name in FILTERS}
    total = 0
    for label, array in images.items():
        outputs = {"small": array}
        outputs.update({name: anonymize_array(anonymizer, array) for name, anonymizer in anonymizers.items()})
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
        dets = anonymizers["gaussian"].detect(tensor)
        outputs["vd"] = draw_detections(tensor, dets).permute(1, 2, 0).numpy()
        faces = dets.count().get("faces", 0)
        for name, out in outputs.items():
            path = MEDIA / f"{label}_{name}.png"
            save_small(out, path)
            total += path.stat().st_size
        print(f"{label}: {faces} face{'' if faces == 1 else 's'} found, {len(outputs)} pictures")
    print(f"total {total / 1024:.0f} KiB in {MEDIA}")


if __name__ == "__main__":
    main()
