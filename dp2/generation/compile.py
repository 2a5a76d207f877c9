"""Faster generator calls: ``torch.compile`` (inductor) and an opt-in reduced precision.

Every generative stage runs its generator through :func:`run_generator`, which applies the run's
two speed choices (:class:`dp2.generation.base.SynthesisOptions`):

* **compile** (``--compile/--no-compile``): the generator's forward is compiled by inductor in
  fp32, never with ``freezing=True`` (it gave wrong pixels: 121 levels off from decoder block 0
  on). Compiled outputs stay within 1 uint8 level of eager on a few pixels (tests/generation/
  test_compile.py, and the end-to-end goldens). The first call compiles (tens of seconds on a
  2-core CPU); compiled code goes to a persistent on-disk cache (inductor's FX graph cache,
  :func:`compile_cache_dir`), so a second process mostly skips the C++ builds. Batches are
  padded to a power of two rows (1, 2, 4, 8, 16) so a run compiles a handful of shapes at most.
  Without a C++ compiler, or when compilation fails, the generator runs eagerly and ONE warning
  says so.
* **precision** (``--precision fp32|bf16|fp16``): fp32 is the default and reproduces
  DeepPrivacy2's pixels. ``bf16`` / ``fp16`` run the generator under autocast with channels_last
  weights and inputs (on CPU, bf16 uses AVX-512 BF16 / AMX where present). ``None`` keeps
  DeepPrivacy2's ``--amp`` rule: fp16 on CUDA, fp32 elsewhere.

What bf16 changes (CPU, eager bf16 vs eager fp32, uint8 outputs; measured by
``bench/bench_speed.py`` and tests/generation/test_compile.py): on the mini golden generators
(fdf256 / fdh_cse, trunc 0.5) at most 14 / 23 levels, mean 0.6 / 1.0, 4-8 % of the pixels of a
crop off by more than 2 levels; on a generated face of the full-size FDF256 architecture (random
weights, face stage: crop, generate, paste) at most 12 levels. The differences are inside the
anonymized region only (known pixels are pasted back exactly), so bf16 changes how a generated
face looks, never what is kept or anonymized.

Importing this module imports nothing beyond torch: ``torch._dynamo`` and ``torch._inductor`` are
imported on the first compiled call, so classic (blur / pixelate) configs pay nothing for it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

import torch

__all__ = ["COMPILE_CACHE_ENV_VAR", "PRECISIONS", "compile_cache_dir", "find_cxx_compiler", "resolve_precision",
           "run_generator"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_CACHE_ENV_VAR = "DP2_COMPILE_CACHE_DIR"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_lock = threading.Lock()
_warned: set[str] = set()


def resolve_precision(precision: str | None, *, amp: bool, device: torch.device) -> str:
    """The precision a generator runs in: as given, else DeepPrivacy2's ``--amp`` rule (fp16 on
    CUDA when ``amp``, fp32 elsewhere).

    >>> resolve_precision(None, amp=True, device=torch.device("cpu"))
    'fp32'
    >>> resolve_precision("bf16", amp=False, device=torch.device("cpu"))
    'bf16'
    """
    if precision is None:
        return "fp16" if amp and device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def compile_cache_dir() -> Path:
    """Where compiled generators are cached: ``$DP2_COMPILE_CACHE_DIR``, else
    ``$TORCHINDUCTOR_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/dp2/inductor``
    (``~/.cache/dp2/inductor``)."""
    given = os.environ.get(COMPILE_CACHE_ENV_VAR) or os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "dp2" / "inductor"


def find_cxx_compiler() -> str | None:
    """The C++ compiler inductor will use (its ``cpp.cxx`` search list, ``$CXX`` / g++), or None."""
    from torch._inductor import config

    search = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    for name in search:
        if name and shutil.which(name):
            return name
    return None


def _warn_once(key: str, message: str, *args) -> None:
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(message, *args)


def _prepare_compiler() -> bool:
    """Point inductor at dp2's cache folder; False (with one warning) when nothing can compile."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") is None or os.environ.get(COMPILE_CACHE_ENV_VAR):
        folder = compile_cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)  # read by inductor on its first use
        except OSError as e:  # inductor then uses its default (a temporary folder)
            logger.debug("compile cache %s not usable (%s); using inductor's default", folder, e)
    if find_cxx_compiler() is None:
        _warn_once("cxx", "--compile: no C++ compiler found (g++ or $CXX on PATH); generators run eagerly "
                          "(slower, same pixels). Install g++ or pass --no-compile to silence this")
        return False
    return True


class _Compiled:
    """A generator's compiled forwards, one per precision (kept on the generator, outside its modules)."""

    def __init__(self) -> None:
        self.functions: dict[str, Callable] = {}
        # Background compiles, per (precision, padded rows): finished / started. ``busy`` is held
        # while a compiled forward runs, so the caller never enters dynamo while it compiles.
        self.ready: set[tuple[str, int]] = set()
        self.pending: set[tuple[str, int]] = set()
        self.busy = threading.Lock()
        self.failed = False
        self.channels_last = False


def _state(generator: torch.nn.Module) -> _Compiled:
    state = generator.__dict__.get("_dp2_compiled")
    if state is None:
        state = _Compiled()
        # object.__setattr__: not an nn.Module attribute, so never in state_dict() or .modules()
        object.__setattr__(generator, "_dp2_compiled", state)
    return state


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def _forward(generator, precision: str, device: torch.device) -> Callable:
    def forward(img, mask, latent, conditions):
        with _autocast(device, precision):
            return generator(img, mask, latent, **conditions)

    return forward


def _compiled_forward(generator, precision: str, device: torch.device) -> Callable | None:
    state = _state(generator)
    if state.failed:
        return None
    fn = state.functions.get(precision)
    if fn is None:
        if not _prepare_compiler():
            state.failed = True
            return None
        # fp32 inductor, no freezing (freezing=True gave wrong pixels), static shapes (batches are padded).
        fn = torch.compile(_forward(generator, precision, device), backend="inductor", dynamic=False)
        state.functions[precision] = fn
    return fn


def _pad_rows(x, n: int):
    """``x`` with its batch padded to ``n`` rows by repeating row 0 (tensors only; others pass)."""
    if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[0] == n:
        return x
    return torch.cat([x, x[:1].expand(n - x.shape[0], *x.shape[1:])])


def _channels_last(x):
    return x.contiguous(memory_format=torch.channels_last) if isinstance(x, torch.Tensor) and x.ndim == 4 else x


def _compile_in_background(generator, precision: str, device: torch.device, args) -> None:
    """Compile for ``args`` (already padded) in a daemon thread; calls meanwhile run eagerly."""
    state = _state(generator)
    key = (precision, args[0].shape[0])
    with _lock:
        if key in state.pending or state.failed:
            return
        state.pending.add(key)
    fn = _compiled_forward(generator, precision, device)
    if fn is None:
        return
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args[:3]) + (
        {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in args[3].items()},)

    def work() -> None:
        try:
            with state.busy, torch.inference_mode():
                fn(*args)
        except Exception as e:  # noqa: BLE001 - any compiler failure: stay eager
            state.failed = True
            _warn_once("failed", "--compile: compiling %s failed (%s); it runs eagerly (slower, same pixels)",
                       type(generator).__name__, type(e).__name__)
        else:
            state.ready.add(key)
            logger.info("%s compiled (%s, batch %d); switching from eager", type(generator).__name__, *key)

    threading.Thread(target=work, name="dp2-compile", daemon=True).start()


def _padded(n: int, img, mask, latent, conditions):
    rows = 1 << max(n - 1, 0).bit_length()  # next power of two: few shapes to compile
    return (_pad_rows(img, rows), _pad_rows(mask, rows), _pad_rows(latent, rows),
            {k: _pad_rows(v, rows) for k, v in conditions.items()})


def run_generator(generator: torch.nn.Module, img: torch.Tensor, mask: torch.Tensor, latent, conditions: dict,
                  *, precision: str = "fp32", compile: bool = False, background: bool = False) -> torch.Tensor:
    """``generator(img, mask, latent, **conditions)`` in the given precision, compiled or not.

    Args:
        generator: a :class:`dp2.generation.base.Generator` on the inputs' device.
        img, mask, latent, conditions: as ``Generator.forward`` takes them (batch N).
        precision: ``"fp32"`` (exact), ``"bf16"`` or ``"fp16"`` (autocast with channels_last).
        compile: run the forward compiled by inductor (falls back to eager with one warning).
        background: with ``compile``, compile in a background thread and run eagerly until it is
            done (live streams: no frame waits for the compiler).

    Returns:
        float32 [N, 3, H, W].
    """
    device = img.device
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "fp32":
        state = _state(generator)
        if not state.channels_last:
            generator.to(memory_format=torch.channels_last)
            state.channels_last = True
        img, mask = _channels_last(img), _channels_last(mask)
        conditions = {k: _channels_last(v) for k, v in conditions.items()}
    eager = _forward(generator, precision, device)
    if not compile or _state(generator).failed:
        return eager(img, mask, latent, conditions).float()
    n = img.shape[0]
    args = _padded(n, img, mask, latent, conditions)
    state = _state(generator)
    if background:
        if (precision, args[0].shape[0]) not in state.ready:
            _compile_in_background(generator, precision, device, args)
            return eager(img, mask, latent, conditions).float()
        if not state.busy.acquire(blocking=False):  # another shape is compiling: stay eager meanwhile
            return eager(img, mask, latent, conditions).float()
        fn = state.functions[precision]
    else:
        fn = _compiled_forward(generator, precision, device)
        if fn is None:
            return eager(img, mask, latent, conditions).float()
    try:
        out = fn(*args)
    except Exception as compiled_error:  # noqa: BLE001 - any compiler failure falls back to eager
        out = eager(img, mask, latent, conditions)  # bad inputs raise here
        _state(generator).failed = True
        _warn_once("failed",
                   "--compile: compiling %s failed (%s: %s); it runs eagerly (slower, same pixels)",
                   type(generator).__name__, type(compiled_error).__name__,
                   str(compiled_error).strip().splitlines()[0][:200] if str(compiled_error).strip() else "")
        return out.float()
    finally:
        if background:
            state.busy.release()
    return out[:n].float()
