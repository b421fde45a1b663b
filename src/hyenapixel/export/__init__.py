"""Deployment of HyenaPixel models (paper Section 3 operators): ONNX export checked in onnxruntime, frozen
inference copies for ``torch.export``, and reduced-precision checks.

- :func:`freeze_long_convs`: an eval copy whose FFT long convolutions are DFT matrix products with constant kernel
  spectra for one input size (exports without FFT or complex operators).
- :func:`fold_star_relu`: a channel MLP's StarReLU folded into its second layer (the frozen copy does it);
  :func:`mlps_as_convolutions` / :class:`PointwiseConvMlp`: folded MLPs as 1x1 convolutions (the ONNX export does it).
- :func:`to_onnx`, :func:`verify_onnx`: ONNX file with a dynamic batch, compared in onnxruntime (CPU provider).
- :class:`PerImage`: runs a long convolution image by image in exported graphs (an ONNX ``Scan`` over the batch).
- :class:`ExportError`: an unsupported model or input size (a :class:`~hyenapixel.errors.UserError`).

This layer sits above ``models`` and ``data`` and never imports ``train``, ``analysis``, ``dense`` or ``cli``;
onnx, onnxscript and onnxruntime are imported only inside the functions that need them.
"""

from hyenapixel.export.frozen import (
    ExportError,
    FrozenBidirectionalHyenaMixer,
    FrozenCausalHyenaMixer,
    FrozenConv1d,
    FrozenConv2d,
    FrozenDirectConv2d,
    FrozenHyenaPixelMixer,
    PerImage,
    PointwiseConvMlp,
    check_input_size,
    fold_star_relu,
    freeze_long_convs,
    mlps_as_convolutions,
    projection_branches,
)
from hyenapixel.export.onnx import OnnxCheck, onnx_session, run_onnx, to_onnx, verify_onnx

__all__ = [
    "ExportError",
    "FrozenBidirectionalHyenaMixer",
    "FrozenCausalHyenaMixer",
    "FrozenConv1d",
    "FrozenConv2d",
    "FrozenDirectConv2d",
    "FrozenHyenaPixelMixer",
    "OnnxCheck",
    "PerImage",
    "PointwiseConvMlp",
    "check_input_size",
    "fold_star_relu",
    "freeze_long_convs",
    "mlps_as_convolutions",
    "onnx_session",
    "projection_branches",
    "run_onnx",
    "to_onnx",
    "verify_onnx",
]
