"""Pure-PyTorch building blocks of the DeepPrivacy2 StyleGAN-UNet generators.

Everything here is written from the published semantics of the StyleGAN2 ops
(FIR resampling, biased activation, resampling convolution) and the DeepPrivacy2
layer facts; no custom CUDA kernels are needed. Parameter and buffer names
(``weight``, ``bias``, ``resample_filter``, ``affine``, ``affine_beta``) and their
registration order equal the official ones, so official ``state_dict`` files load
unchanged.

Convention: feature maps are ``[N, C, H, W]`` float tensors; channels_last memory
format is accepted everywhere (only the conv algorithms may change, not the math).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ACTIVATION_GAINS",
    "Conv2d",
    "FullyConnectedLayer",
    "ResidualBlock",
    "bias_act",
    "conv2d_resample",
    "make_fir_filter",
    "upfirdn2d",
]

# Default gain that keeps the activation's output variance close to its input's.
ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}
_LRELU_SLOPE = 0.2


def make_fir_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Build the normalised 2-D FIR filter used for 2x resampling.

    Args:
        taps: 1-D filter taps; the 2-D filter is their outer product.

    Returns:
        float32 ``[len(taps), len(taps)]`` filter that sums to 1.

    Example:
        >>> f = make_fir_filter()
        >>> f.shape, float(f.sum()), float(f[0, 0] * 64)
        (torch.Size([4, 4]), 1.0, 1.0)
    """
    t = torch.as_tensor(taps, dtype=torch.float32)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"taps must be a non-empty 1-D sequence, got shape {list(t.shape)}")
    f = torch.outer(t, t)
    return f / f.sum()


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, (px, py) or (x0, x1, y0, y1), got {padding}")
    return padding  # type: ignore[return-value]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: int | Sequence[int] = 0, gain: float = 1.0,
              flip_filter: bool = False) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images (reference version).

    The four steps, in this order:

    1. upsample by inserting ``up - 1`` zeros after every pixel (``H -> H * up``);
    2. pad with ``padding = (x0, x1, y0, y1)`` zeros; negative values crop;
    3. convolve every channel with the 2-D filter ``f * gain`` (a true convolution,
       i.e. ``f`` is flipped unless ``flip_filter``; the [1,3,3,1] filter is symmetric);
    4. keep every ``down``-th pixel, starting at 0.

    Args:
        x: float ``[N, C, H, W]``.
        f: float32 ``[fh, fw]`` filter.
        up: integer upsampling factor.
        down: integer downsampling factor.
        padding: ``int``, ``(px, py)`` or ``(x0, x1, y0, y1)`` in upsampled pixels.
        gain: overall scale of the filter; ``up ** 2`` keeps the DC level for upsampling.
        flip_filter: correlate instead of convolve.

    Returns:
        ``[N, C, (H*up + y0 + y1 - fh) // down + 1, (W*up + x0 + x1 - fw) // down + 1]``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {list(x.shape)}")
    if f.ndim != 2:
        raise ValueError(f"f must be a 2-D filter, got shape {list(f.shape)}")
    n, c, h, w = x.shape
    x0, x1, y0, y1 = _parse_padding(padding)
    if up > 1:
        xu = x.new_zeros([n, c, h * up, w * up])
        xu[:, :, ::up, ::up] = x
        x = xu
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    f = f.to(x.dtype) * gain
    if not flip_filter:
        f = f.flip([0, 1])
    weight = f[None, None].repeat(c, 1, 1, 1)  # [C, 1, fh, fw]: depthwise
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def conv2d_resample(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor | None = None,
                    up: int = 1, down: int = 1, padding: int = 0,
                    flip_weight: bool = True) -> torch.Tensor:
    """2-D convolution with FIR-filtered up- or downsampling.

    Semantics (the "reference" order): zero-insert upsample by ``up``, FIR-filter with
    gain ``up**2``, correlate with ``weight`` (``flip_weight=True``, like ``F.conv2d``)
    or convolve with it (``flip_weight=False``: the kernel is rotated by 180 degrees)
    using ``padding``, FIR-filter and keep every ``down``-th pixel. Numerically it
    takes the same fast paths as StyleGAN2:

    * 1x1 kernel + down: filter+decimate first, then the 1x1 conv;
    * 1x1 kernel + up: 1x1 conv first, then zero-insert + filter;
    * down only: filter, then strided conv;
    * up: transposed strided conv (with the flipped kernel), then filter;
    * neither: plain ``conv2d``.

    Args:
        x: float ``[N, Cin, H, W]``.
        weight: ``[Cout, Cin, kh, kw]`` (already scaled).
        f: ``[fh, fw]`` FIR filter (float32 in the official models); required when
            ``up > 1`` or ``down > 1``.
        up: 1 or an integer factor.
        down: 1 or an integer factor.
        padding: symmetric conv padding (``kernel_size // 2`` for "same").
        flip_weight: True = cross-correlation, False = true convolution.

    Returns:
        ``[N, Cout, H * up // down, W * up // down]`` for "same" padding.
    """
    if up > 1 and down > 1:
        raise NotImplementedError("simultaneous up- and downsampling is not used by DP2")
    kh, kw = weight.shape[2:]
    if up == 1 and down == 1:
        return F.conv2d(x, weight if flip_weight else weight.flip([2, 3]), padding=padding)
    if f is None:
        raise ValueError("a FIR filter f is required for up/down sampling")
    if not f.is_floating_point():
        raise TypeError(f"the FIR filter must be a floating-point tensor, got {f.dtype}")
    fh, fw = f.shape
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
        if kh == 1 and kw == 1:
            x = F.conv2d(x, weight)
            return upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up ** 2)
        # Transposed conv == zero-insertion followed by a true convolution, so the
        # kernel is flipped only when a correlation is wanted.
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        w_t = weight.transpose(0, 1)  # [Cin, Cout, kh, kw]
        if flip_weight:
            w_t = w_t.flip([2, 3])
        x = F.conv_transpose2d(x, w_t, stride=up, padding=[pyt, pxt])
        return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up ** 2)
    # down > 1
    if not flip_weight:
        weight = weight.flip([2, 3])
    px0 += (fw - down + 1) // 2
    px1 += (fw - down) // 2
    py0 += (fh - down + 1) // 2
    py1 += (fh - down) // 2
    if kh == 1 and kw == 1:
        x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
        return F.conv2d(x, weight)
    x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
    return F.conv2d(x, weight, stride=down)


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1,
             act: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """Add a bias, apply an activation, scale by ``gain`` and clamp (in this order).

    Args:
        x: float tensor.
        b: 1-D bias broadcast along ``dim`` (or None).
        dim: axis of ``x`` the bias runs along.
        act: ``"linear"`` or ``"lrelu"`` (slope 0.2).
        gain: output scale; defaults to the activation's ``ACTIVATION_GAINS`` value.
        clamp: clamp the output to ``[-clamp, clamp]``; None or negative = no clamp.

    Returns:
        Tensor of the shape of ``x``.
    """
    if act not in ACTIVATION_GAINS:
        raise ValueError(f"act must be one of {sorted(ACTIVATION_GAINS)}, got {act!r}")
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    if act == "lrelu":
        x = F.leaky_relu(x, _LRELU_SLOPE)
    gain = ACTIVATION_GAINS[act] if gain is None else float(gain)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


class FullyConnectedLayer(nn.Module):
    """Dense layer with an equalised learning rate (runtime weight scaling).

    ``y = act(x @ (weight * lr_multiplier / sqrt(in_features)).T + bias * lr_multiplier)``.
    """

    def __init__(self,
                 in_features: int,            # Number of input features.
                 out_features: int,           # Number of output features.
                 bias: bool = True,           # Learn an additive bias?
                 activation: str = "linear",  # "linear" or "lrelu".
                 lr_multiplier: float = 1.0,  # Learning-rate multiplier (scales weight and bias at run time).
                 bias_init: float = 0.0,      # Initial value of the (unscaled) bias.
                 ) -> None:
        super().__init__()
        if activation not in ACTIVATION_GAINS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_GAINS)}, got {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = (nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier))
                     if bias else None)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"activation={self.activation}, weight_gain={self.weight_gain:.6g}, "
                f"bias_gain={self.bias_gain:g}")


class Conv2d(nn.Module):
    """DeepPrivacy2's StyleGAN2-style convolution.

    Forward, in order:

    1. if ``w_dim`` is set: ``x = x * affine(w) + affine_beta(w)`` per input channel
       (the "modulation" acts on the input, ``affine.bias`` starts at 1);
    2. resampling conv with ``weight / sqrt(in_channels * k * k)`` (``conv2d_resample``);
    3. if ``norm``: InstanceNorm (eps 1e-5, no affine) **before** the bias;
    4. ``bias_act``: bias, activation, ``gain * default activation gain``, clamp at
       ``conv_clamp * gain``.
    """

    def __init__(self,
                 in_channels: int,               # Number of input channels.
                 out_channels: int,              # Number of output channels.
                 kernel_size: int = 3,           # Square kernel side.
                 activation: str = "lrelu",      # "linear" or "lrelu".
                 conv_clamp: float | None = None,  # Clamp the output to +-conv_clamp*gain; None = off.
                 bias: bool = True,              # Learn an additive bias?
                 norm: bool = False,             # InstanceNorm after the conv (before the bias)?
                 lr_multiplier: float = 1.0,     # Learning-rate multiplier.
                 bias_init: float = 0.0,         # Initial bias value.
                 w_dim: int | None = None,       # Modulate the input from w of this size; None = off.
                 gain: float = 1.0,              # Extra output gain (residual branch scaling).
                 up: int = 1,                    # Integer upsampling factor.
                 down: int = 1,                  # Integer downsampling factor.
                 ) -> None:
        super().__init__()
        if activation not in ACTIVATION_GAINS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_GAINS)}, got {activation!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.activation = activation
        self.up = up
        self.down = down
        self.padding = kernel_size // 2
        self.norm = norm
        self.w_dim = w_dim
        self.weight_gain = lr_multiplier / math.sqrt(in_channels * kernel_size ** 2)
        self.bias_gain = lr_multiplier
        self.act_gain = ACTIVATION_GAINS[activation] * gain
        self.conv_clamp = conv_clamp * gain if conv_clamp is not None else None
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.full([out_channels], float(bias_init))) if bias else None
        if up > 1 or down > 1:
            self.register_buffer("resample_filter", make_fir_filter())
        else:
            self.resample_filter = None
        if w_dim is not None:
            self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
            self.affine_beta = FullyConnectedLayer(w_dim, in_channels, bias_init=0.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        if self.w_dim is not None:
            if w is None:
                raise ValueError("this Conv2d is modulated by w; pass w [N, w_dim]")
            gamma = self.affine(w)[:, :, None, None]       # [N, Cin, 1, 1]
            beta = self.affine_beta(w)[:, :, None, None]   # [N, Cin, 1, 1]
            x = torch.addcmul(beta, x, gamma)
        weight = self.weight.to(x.dtype) * self.weight_gain
        # StyleGAN2 convolves (instead of correlating) in upsampling layers ("slightly
        # faster" there); the official weights were trained that way, so keep it.
        x = conv2d_resample(x, weight, f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=(self.up == 1))
        if self.norm:
            x = F.instance_norm(x, eps=1e-5)
        b = None
        if self.bias is not None:
            b = self.bias.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        return bias_act(x, b, act=self.activation, gain=self.act_gain, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"activation={self.activation}, act_gain={self.act_gain:.6g}, "
                f"conv_clamp={self.conv_clamp if self.conv_clamp is None else round(self.conv_clamp, 4)}, "
                f"up={self.up}, down={self.down}, norm={self.norm}, bias={self.bias is not None}, "
                f"w_dim={self.w_dim}")


class ResidualBlock(nn.Module):
    """Two 3x3 convs plus a 1x1 skip, summed: ``skip(x) + conv1(conv0(x))``.

    ``conv0`` does the downsampling and ``conv1`` the upsampling. Both branches are
    scaled by ``residual_gain`` (sqrt(1/2) in the encoder, sqrt(1/3) in the decoder,
    where a U-Net feature is the third summand). With ``fix_errors=False`` (the FDH
    no-CSE checkpoint) the skip conv is lrelu-activated instead of linear.
    """

    def __init__(self,
                 in_channels: int,              # Input channels.
                 out_channels: int,             # Output channels.
                 w_dim: int | None = None,      # Modulate conv0/conv1 from w; None = off.
                 norm: bool = False,            # InstanceNorm after each conv.
                 up: int = 1,                   # Upsampling factor (conv1 and skip).
                 down: int = 1,                 # Downsampling factor (conv0 and skip).
                 conv_clamp: float | None = None,  # Clamp of the 3x3 convs (before gain).
                 residual_gain: float = math.sqrt(0.5),  # Scale of each branch.
                 fix_errors: bool = True,       # False: lrelu on the skip (FDH no-CSE).
                 ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual_gain = residual_gain
        self.conv0 = Conv2d(in_channels, out_channels, w_dim=w_dim, norm=norm, down=down,
                            conv_clamp=conv_clamp)
        self.conv1 = Conv2d(out_channels, out_channels, w_dim=w_dim, norm=norm, up=up,
                            conv_clamp=conv_clamp, gain=residual_gain)
        self.skip = Conv2d(in_channels, out_channels, kernel_size=1, bias=False, up=up, down=down,
                           activation="linear" if fix_errors else "lrelu", gain=residual_gain)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        y = self.skip(x)
        x = self.conv1(self.conv0(x, w=w), w=w)
        return y + x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, residual_gain={self.residual_gain:.6g}"
