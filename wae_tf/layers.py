"""A stride-2 transposed convolution written as one stride-1 convolution + depth-to-space.

`keras.layers.Conv2DTranspose(filters, k, strides=2, padding="same")` is, exactly, the
linear map y[2m + r] = sum_d x[m - d] w[2d + r + p] per output parity r in {0, 1} and
axis (p = (k - 2) // 2, the "same" padding before the input): each output parity reads
every other tap of the kernel. Gathering those taps into one kernel with 4 x filters
output channels (one group per parity pair (r_y, r_x), zero where a parity has no tap at
an offset) turns the layer into a plain stride-1 convolution followed by a
depth-to-space rearrangement: the "sub-pixel" form.

Why: XLA computes the kernel gradient of a strided transposed convolution as a
convolution over the zero-dilated input, which measured 2-5x slower than cuDNN on the
CelebA decoder's layers on an H100/H200 (results/benchmarks); a stride-1 convolution has
no dilated input. The function is the same, so `SubPixelConv2DTranspose` keeps
Conv2DTranspose's variables (kernel (k, k, filters, in_channels) and bias) and names:
parameter counts, checkpoints and weights are interchangeable with the plain layer.
Whether it is faster depends on the backend and the shapes: see README "Benchmarks".
"""

from __future__ import annotations

import math

import keras
from keras import ops


def subpixel_taps(kernel_size: int) -> tuple[int, int, list[list[int | None]]]:
    """The sub-pixel window of a stride-2 "same" transposed convolution along one axis.

    Returns (window, pad_before, taps): the stride-1 window length, the zero padding
    before the input, and taps[r][u] = the transposed kernel's tap index feeding output
    parity r from window position u (None: no tap, a zero in the gathered kernel).
    """
    k = kernel_size
    p = max(k - 2, 0) // 2  # "same": padding before, as for the forward strided conv
    # Output parity r reads x[m - d] with tap t = 2d + r + p, for every t in [0, k).
    offsets = {r: {(t - r - p) // 2: t for t in range(k) if (t - r - p) % 2 == 0} for r in (0, 1)}
    d_min = min(min(o) for o in offsets.values())
    d_max = max(max(o) for o in offsets.values())
    window = d_max - d_min + 1
    # Correlation window position u reads x[m + u - d_max], i.e. d = d_max - u.
    taps = [[offsets[r].get(d_max - u) for u in range(window)] for r in (0, 1)]
    return window, d_max, taps


def subpixel_kernel(kernel, kernel_size: int):
    """Gather a Conv2DTranspose kernel (k, k, C_out, C_in) into the stride-1 kernel
    (window, window, C_in, 4 C_out), output channels ordered (r_y, r_x, c_out)."""
    window, _, taps = subpixel_taps(kernel_size)
    k_out, k_in = kernel.shape[2], kernel.shape[3]
    zero = ops.zeros((k_out, k_in), dtype=kernel.dtype)
    rows = []
    for u_y in range(window):
        cols = []
        for u_x in range(window):
            groups = []
            for r_y in (0, 1):
                for r_x in (0, 1):
                    t_y, t_x = taps[r_y][u_y], taps[r_x][u_x]
                    groups.append(zero if t_y is None or t_x is None else kernel[t_y, t_x])
            # (4, C_out, C_in) -> (C_in, 4 C_out)
            cols.append(ops.reshape(ops.transpose(ops.stack(groups), (2, 0, 1)), (k_in, 4 * k_out)))
        rows.append(ops.stack(cols))
    return ops.stack(rows)


def subpixel_conv2d_transpose(inputs, kernel, kernel_size: int):
    """Conv2DTranspose(strides=2, padding="same") without bias, NHWC, in sub-pixel form."""
    window, pad_before, _ = subpixel_taps(kernel_size)
    pad_after = window - 1 - pad_before
    padded = ops.pad(inputs, ((0, 0), (pad_before, pad_after), (pad_before, pad_after), (0, 0)))
    phases = ops.conv(padded, subpixel_kernel(kernel, kernel_size), strides=1, padding="valid")
    batch, height, width = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(inputs)[2]
    filters = kernel.shape[2]
    phases = ops.reshape(phases, (batch, height, width, 2, 2, filters))
    phases = ops.transpose(phases, (0, 1, 3, 2, 4, 5))  # (N, H, r_y, W, r_x, C)
    return ops.reshape(phases, (batch, 2 * height, 2 * width, filters))


@keras.saving.register_keras_serializable(package="wae_tf")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """Conv2DTranspose computed in sub-pixel form when strides=2 and padding="same"
    (channels_last, no dilation or output padding); otherwise exactly the parent layer.

    Same constructor, variables and outputs as `keras.layers.Conv2DTranspose` (tests:
    outputs and gradients equal within float32 rounding on TensorFlow and JAX). It has the
    parent's class name on purpose: a .keras file keys each layer's weights by its class
    name, so this name keeps .keras files of either form interchangeable (a decoder built
    with one form loads the weights saved from the other).
    """

    def _subpixel_applies(self) -> bool:
        return (
            tuple(self.strides) == (2, 2)
            and self.padding == "same"
            and self.data_format == "channels_last"
            and tuple(self.dilation_rate) == (1, 1)
            and self.output_padding is None
            and self.kernel_size[0] == self.kernel_size[1]
        )

    def call(self, inputs):
        if not self._subpixel_applies():
            return super().call(inputs)
        outputs = subpixel_conv2d_transpose(inputs, self.kernel, self.kernel_size[0])
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


SubPixelConv2DTranspose = Conv2DTranspose  # the descriptive name of the same class


def gathered_flops_ratio(kernel_size: int) -> float:
    """Multiply-adds of the sub-pixel form over those of the transposed convolution's
    nonzero taps (> 1 when the gathered kernel holds zeros): 2.25 for k=4, 1.44 for k=5."""
    window, _, taps = subpixel_taps(kernel_size)
    useful = sum(
        sum(t is not None for t in taps[r_y]) * sum(t is not None for t in taps[r_x])
        for r_y in (0, 1)
        for r_x in (0, 1)
    )
    return 4 * window * window / useful if useful else math.inf
