"""Pure tensor operations (no parameters): FFT long convolutions (paper Section 3), the fused implicit-kernel
evaluation (Eq. 4), and their references. Each fast path is chosen by one function next to its reference."""

from hyenapixel.ops.fftconv import (
    AxisPlan,
    ConvPlan,
    FFTConv,
    apply_spectrum,
    conv_fresh_kernel,
    conv_saving_spectrum,
    conv_with_plan,
    fftconv1d,
    fftconv2d,
    kernel_spectrum,
    next_fast_len,
    plan_conv1d,
    plan_conv2d,
)
from hyenapixel.ops.implicit import implicit_kernel, implicit_kernel_ref
from hyenapixel.ops.reference import fftconv1d_ref, fftconv2d_ref

__all__ = [
    "AxisPlan",
    "ConvPlan",
    "FFTConv",
    "apply_spectrum",
    "conv_fresh_kernel",
    "conv_saving_spectrum",
    "conv_with_plan",
    "fftconv1d",
    "fftconv1d_ref",
    "fftconv2d",
    "fftconv2d_ref",
    "implicit_kernel",
    "implicit_kernel_ref",
    "kernel_spectrum",
    "next_fast_len",
    "plan_conv1d",
    "plan_conv2d",
]
