"""Small hand-checked properties of the StyleGAN building blocks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dp2.generation.layers import (Conv2d, FullyConnectedLayer, ResidualBlock, bias_act,
                                   conv2d_resample, make_fir_filter, upfirdn2d)


def test_fir_filter_is_normalised_outer_product():
    f = make_fir_filter()
    expected = torch.tensor([1.0, 3, 3, 1])
    assert torch.equal(f * 64, torch.outer(expected, expected))


def test_upfirdn2d_upsample_keeps_constant_images_constant():
    x = torch.full((1, 2, 4, 5), 3.0)
    y = upfirdn2d(x, make_fir_filter(), up=2, padding=(2, 1, 2, 1), gain=4)
    assert y.shape == (1, 2, 8, 10)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 3.0))


def test_upfirdn2d_downsample_hand_computed():
    # A single impulse at (1, 1) filtered by the 4x4 FIR, padded by 1, then decimated.
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 64.0
    y = upfirdn2d(x, make_fir_filter(), down=2, padding=1)
    assert y.shape == (1, 1, 2, 2)
    assert torch.equal(y[0, 0], torch.tensor([[9.0, 3.0], [3.0, 1.0]]))


def _reference_conv2d_resample(x, w, up, down, pad, flip_weight):
    """Slow path straight from the definition: upsample+filter, conv, filter+decimate."""
    f = make_fir_filter()
    if not flip_weight:
        w = w.flip([2, 3])
    if up > 1:
        p0, p1 = (4 + up - 1) // 2 + pad, (4 - up) // 2 + pad
        x = upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up ** 2)
        return F.conv2d(x, w)
    p0, p1 = (4 - down + 1) // 2 + pad, (4 - down) // 2 + pad
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return F.conv2d(x, w)[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2)])
@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_fast_paths_match_definition(up, down, kernel, flip_weight):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 10, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 3, kernel, kernel, generator=gen, dtype=torch.float64)
    fast = conv2d_resample(x, w, f=make_fir_filter().double(), up=up, down=down,
                           padding=kernel // 2, flip_weight=flip_weight)
    slow = _reference_conv2d_resample(x, w, up, down, kernel // 2, flip_weight)
    assert fast.shape == (2, 5, 10 * up // down, 6 * up // down)
    assert torch.allclose(fast, slow, atol=1e-12)


def test_bias_act_order_is_bias_act_gain_clamp():
    x = torch.tensor([[-2.0, 1.0, 10.0]])
    y = bias_act(x, torch.tensor([1.0]), dim=0, act="lrelu", gain=2.0, clamp=5.0)
    assert torch.allclose(y, torch.tensor([[-0.4, 4.0, 5.0]]))


def test_fully_connected_lr_multiplier():
    fc = FullyConnectedLayer(4, 2, lr_multiplier=0.01, bias_init=1.0)
    assert fc.weight_gain == pytest.approx(0.01 / 2) and fc.bias_gain == 0.01
    y = fc(torch.zeros(3, 4))
    assert torch.allclose(y, torch.ones(3, 2))  # bias stored as 1/lr, applied times lr


def test_conv2d_modulation_and_norm():
    conv = Conv2d(2, 3, kernel_size=1, w_dim=4, norm=True, conv_clamp=256, gain=math.sqrt(0.5))
    assert conv.conv_clamp == pytest.approx(256 * math.sqrt(0.5))
    assert [k for k, _ in conv.named_parameters()] == [
        "weight", "bias", "affine.weight", "affine.bias", "affine_beta.weight", "affine_beta.bias"]
    y = conv(torch.randn(2, 2, 5, 5), w=torch.randn(2, 4))
    assert y.shape == (2, 3, 5, 5)
    with pytest.raises(ValueError, match="modulated"):
        conv(torch.randn(1, 2, 5, 5))
    assert "w_dim=4" in repr(conv)


def test_residual_block_shapes_and_buffers():
    block = ResidualBlock(4, 8, down=2)
    assert "conv0.resample_filter" in block.state_dict()
    assert "conv1.resample_filter" not in block.state_dict()
    assert block(torch.randn(1, 4, 8, 6)).shape == (1, 8, 4, 3)
    up = ResidualBlock(8, 4, w_dim=3, norm=True, up=2)
    assert up(torch.randn(2, 8, 9, 5), w=torch.randn(2, 3)).shape == (2, 4, 18, 10)
