"""Pure tensor operations (no parameters): FFT long convolutions (paper Section 3) and their direct references."""

from hyenapixel.ops.fftconv import (
    AxisPlan,
    ConvPlan,
    apply_spectrum,
    conv_saving_spectrum,
    conv_with_plan,
    fftconv1d,
    fftconv2d,
    kernel_spectrum,
    next_fast_len,
    plan_conv1d,
    plan_conv2d,
)
from hyenapixel.ops.reference import fftconv1d_ref, fftconv2d_ref

__all__ = [
    "AxisPlan",
    "ConvPlan",
    "apply_spectrum",
    "conv_saving_spectrum",
    "conv_with_plan",
    "fftconv1d",
    "fftconv1d_ref",
    "fftconv2d",
    "fftconv2d_ref",
    "kernel_spectrum",
    "next_fast_len",
    "plan_conv1d",
    "plan_conv2d",
]
