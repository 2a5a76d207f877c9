"""Restricted unpickling of detectron2 model-zoo ``.pkl`` files and DensePose vertex features.

A pickle can name any importable callable and call it while loading, so a downloaded
``.pkl`` read with :func:`pickle.load` is code execution. The files used here only ever
hold numpy arrays inside plain containers:

* detectron2 model-zoo checkpoints (``model_final_1d3314.pkl``):
  ``{"model": {name: np.ndarray}, "__author__": str, "meta": {...}}``;
* DensePose vertex features (``phi_smpl_27554_256.pkl``): ``{"features": np.ndarray, ...}``.

:class:`RestrictedUnpickler` therefore resolves only the few globals that numpy's array
and scalar pickles use and refuses everything else with :class:`UnsafePickleError`,
which names the file and the refused global. Loading uses ``encoding="latin1"`` so that
arrays pickled by Python 2 (old model-zoo files) decode correctly.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_detectron2_pkl", "load_pickle_restricted",
           "load_vertex_features"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle refers to a global that the restricted unpickler does not allow."""


def _numpy_multiarray():
    # numpy 2 moved ``numpy.core`` to ``numpy._core``; ``numpy.core`` still works but warns.
    try:
        from numpy._core import multiarray  # type: ignore[attr-defined]
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_numeric():
    try:
        from numpy._core import numeric  # type: ignore[attr-defined]
    except ImportError:  # numpy 1.x
        from numpy.core import numeric  # type: ignore[no-redef]
    return numeric


def _allowed_globals() -> dict[tuple[str, str], Any]:
    multiarray = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar  # numpy scalars, e.g. inside "meta"
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # plain containers some writers name explicitly (protocol 0/1 or collections)
    allowed[("collections", "OrderedDict")] = __import__("collections").OrderedDict
    allowed[("builtins", "set")] = set
    allowed[("builtins", "frozenset")] = frozenset
    allowed[("builtins", "slice")] = slice
    allowed[("__builtin__", "set")] = set
    allowed[("__builtin__", "frozenset")] = frozenset
    # protocol <= 2 pickles written by Python 3 store bytes as ``_codecs.encode(str, "latin1")``
    allowed[("_codecs", "encode")] = _latin1_encode
    # pickle protocol 5 stores arrays as ``numpy[._]core.numeric._frombuffer(buffer, dtype, shape, order)``
    numeric = _numpy_numeric()
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that reconstructs numpy arrays and plain containers only.

    Args:
        file: binary file object positioned at the pickle.
        source: name of the file, used in error messages.
    """

    def __init__(self, file, *, source: str = "<pickle>") -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load global {module}.{name} (only numpy arrays and plain "
                "containers are allowed; the file may be corrupt or malicious)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refusing persistent id {pid!r} (not a numpy/plain pickle)")


def load_pickle_restricted(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` allowing only numpy arrays/scalars and plain Python containers.

    Raises:
        UnsafePickleError: the pickle names a global that is not allowed.
        pickle.UnpicklingError / EOFError / OSError: unreadable or truncated file.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read()
    return RestrictedUnpickler(io.BytesIO(data), source=str(path)).load()


def load_detectron2_pkl(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``model`` dict of a detectron2 model-zoo checkpoint: ``{state_dict name: ndarray}``.

    Accepts ``{"model": {...}, "__author__": ..., ...}`` (model-zoo format; names are used
    as they are, like detectron2 does for such files). A ``module.`` prefix on every key is
    stripped.

    Raises:
        UnsafePickleError: the pickle names a global that is not allowed.
        ValueError: the file is not in model-zoo format or holds non-array values.
    """
    obj = load_pickle_restricted(path)
    if not isinstance(obj, dict) or "model" not in obj:
        kind = type(obj).__name__ if not isinstance(obj, dict) else f"dict with keys {sorted(map(str, obj))[:8]}"
        raise ValueError(f"{path}: expected a detectron2 model-zoo pickle {{'model': {{name: array}}, "
                         f"'__author__': ...}}, got a {kind}")
    if "__author__" not in obj:
        raise ValueError(f"{path}: no '__author__' key: Caffe2/Detectron1-style pickles (c2 blob names) "
                         "are not supported, only detectron2 model-zoo files")
    model = obj["model"]
    if not isinstance(model, dict):
        raise ValueError(f"{path}: 'model' must be a dict of arrays, got {type(model).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in model.items():
        if not isinstance(value, np.ndarray):
            if isinstance(value, (np.generic, int, float)):
                value = np.asarray(value)
            else:
                raise ValueError(f"{path}: model[{key!r}] is a {type(value).__name__}, expected a numpy array")
        out[str(key)] = value
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def load_vertex_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """DensePose vertex features (``phi_smpl_27554_256.pkl``): ``{"features": [V, K], "embeddings"?: [K, D]}``.

    Only the ``features`` and ``embeddings`` entries are returned (as float32 arrays).

    Raises:
        UnsafePickleError: the pickle names a global that is not allowed.
        ValueError: no ``features`` array in the file.
    """
    obj = load_pickle_restricted(path)
    if not isinstance(obj, dict) or "features" not in obj:
        raise ValueError(f"{path}: expected a dict with a 'features' array")
    out = {}
    for name in ("features", "embeddings"):
        if name in obj:
            value = np.asarray(obj[name])
            if value.ndim != 2:
                raise ValueError(f"{path}: {name!r} must be 2-D, got shape {list(value.shape)}")
            out[name] = value.astype(np.float32)
    return out
