"""Inference speed-ups shared by the full-body detectors (Mask R-CNN, DensePose CSE, DSFD).

Three independent means, each a constructor argument of the detectors:

* **Optimized fp32** (``optimize=True``, the default): batch norms with fixed statistics are
  folded into the preceding convolution and the network runs in the channels-last (NHWC)
  memory format, for which oneDNN has much faster CPU kernels. A frozen batch norm is an
  affine map, so folding changes only float rounding (relative ~1e-7 per layer); the
  detections stay those of the reference path (tests compare both on the golden data).
* **bf16** (``precision="bf16"``, opt-in): the network runs under ``torch.autocast`` in
  bfloat16 (AMX / AVX-512-BF16 on recent x86 CPUs, tensor cores on CUDA). Box decoding, NMS,
  ROI pooling and mask pasting stay in float32. Boxes move by a few pixels and scores by about
  1e-2, so a detection close to a threshold may appear or vanish: not DeepPrivacy2's numbers.
* **torch.compile** (``compile=True``, opt-in): the backbone is compiled with inductor (fp32 or
  under bf16 autocast; never ``freezing=True``, which gives wrong outputs on these models). The
  first call per image size costs tens of seconds on a 2-core CPU, so it only pays on long
  runs. If compiling fails (no C++ compiler, unsupported op) the eager module is used, with one
  warning.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Callable

import torch
from torch import nn

__all__ = ["PRECISIONS", "CompiledOrEager", "check_precision", "fold_batchnorm_", "inference_autocast",
           "optimize_for_inference_"]

logger = logging.getLogger(__name__)

#: Accepted ``precision`` values of the detectors.
PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else ValueError naming it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return precision


def inference_autocast(device: torch.device, precision: str):
    """A context manager: ``torch.autocast`` in bf16 for ``precision="bf16"``, else a no-op."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` of an eval-mode batch norm, in float64."""
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    weight = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def _fold_into_conv(conv: nn.Conv2d, bn: nn.Module) -> None:
    """``bn(conv(x)) == conv'(x)``: scale the conv weight per output channel and set its bias."""
    scale, shift = _bn_affine(bn)
    weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.ndim - 1)))
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)


def _is_foldable_bn(module: nn.Module | None) -> bool:
    if isinstance(module, nn.BatchNorm2d):
        return not module.training and module.track_running_stats and module.running_var is not None
    # FrozenBatchNorm2d of dp2.detection.cse and of torchvision: statistics stored as buffers
    return (type(module).__name__ == "FrozenBatchNorm2d" and hasattr(module, "running_var")
            and hasattr(module, "eps"))


_SEQUENTIAL_TYPES = ("IntermediateLayerGetter",)  # torchvision: a ModuleDict run in order


def fold_batchnorm_(module: nn.Module) -> int:
    """Fold every eval-mode batch norm that directly follows a convolution into it, in place.

    Recognised patterns: consecutive ``Conv2d``, ``BatchNorm2d`` children of an ``nn.Sequential``
    (torchvision's ``Conv2dNormActivation``, ResNet ``downsample``, DSFD's extra layers and
    torchvision's ``IntermediateLayerGetter``), the ``convN``/``bnN`` pairs of torchvision's
    ResNet blocks, and a conv with a ``norm`` child (dp2's CSE ``NormConv2d``). The batch norm is
    replaced by ``nn.Identity`` (or removed from ``norm``). Batch norms in training mode are
    left alone.

    Returns:
        The number of batch norms folded.
    """
    count = 0
    for child in module.children():
        count += fold_batchnorm_(child)
    if isinstance(module, nn.Sequential) or type(module).__name__ in _SEQUENTIAL_TYPES:
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if type(conv) is nn.Conv2d and _is_foldable_bn(bn):
                _fold_into_conv(conv, bn)
                module._modules[b] = nn.Identity()
                count += 1
    for i in range(1, 4):  # torchvision Bottleneck / BasicBlock
        conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
        if type(conv) is nn.Conv2d and _is_foldable_bn(bn):
            _fold_into_conv(conv, bn)
            setattr(module, f"bn{i}", nn.Identity())
            count += 1
    if isinstance(module, nn.Conv2d) and _is_foldable_bn(getattr(module, "norm", None)):
        _fold_into_conv(module, module.norm)
        module.norm = None
        count += 1
    return count


def _channels_last_input(_module: nn.Module, args: tuple):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        return (x.contiguous(memory_format=torch.channels_last),) + tuple(args[1:])
    return None


def optimize_for_inference_(model: nn.Module, *, entry: nn.Module | None = None, fold_bn: bool = True) -> nn.Module:
    """Move ``model`` to channels-last and fold its batch norms, in place (see the module docstring).

    Args:
        model: an eval-mode network.
        entry: the submodule that receives the image batch; its 4-D input is converted to
            channels-last by a forward pre-hook (default: ``model``).
        fold_bn: also fold the batch norms into the convolutions (:func:`fold_batchnorm_`).

    Returns:
        ``model``.
    """
    folded = fold_batchnorm_(model) if fold_bn else 0
    model.to(memory_format=torch.channels_last)
    (entry if entry is not None else model).register_forward_pre_hook(_channels_last_input)
    logger.debug("%s: %d batch norms folded, channels-last", type(model).__name__, folded)
    return model


def _compile(module: nn.Module) -> Callable | None:
    """``torch.compile`` with dp2's compile cache, or None (eager, one warning) without a C++ compiler."""
    from dp2.generation.compile import prepare_compiler

    return torch.compile(module, dynamic=False) if prepare_compiler() else None


class CompiledOrEager(nn.Module):
    """``torch.compile(module)`` that falls back to ``module`` itself when compiling fails.

    Compilation happens on the first call; if it raises (no C++ compiler, an unsupported op),
    one warning is emitted and every later call runs the eager module. The wrapped module
    stays reachable as ``.module`` (its state dict keys are unchanged).

    Args:
        module: the module to compile.
        name: how to call it in the warning.
        compiler: ``torch.compile``-like callable (tests inject a failing one).
    """

    def __init__(self, module: nn.Module, *, name: str, compiler: Callable | None = None) -> None:
        super().__init__()
        self.module = module
        self.name = name
        self._compiled: Callable | None = (compiler or _compile)(module)
        self.failed = False

    def forward(self, *args, **kwargs):
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure falls back to eager
                self._compiled = None
                self.failed = True
                warnings.warn(f"torch.compile of {self.name} failed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200] if str(err) else ''}); running it eagerly",
                              RuntimeWarning, stacklevel=2)
        return self.module(*args, **kwargs)
