"""Deployment of HyenaPixel models (paper Section 3 operators): ONNX export checked in onnxruntime, frozen
inference copies for ``torch.export``, and reduced-precision checks.

- :func:`freeze_long_convs`: an eval copy whose FFT long convolutions are DFT matrix products with constant kernel
  spectra for one input size (exports without FFT or complex operators).
  Each mixer's ``frozen_conv`` seam gets a :class:`FrozenConv2d`, :class:`FrozenDirectConv2d` or
  :class:`FrozenConv1d`; the channel MLPs fold their StarReLU (:meth:`hyenapixel.layers.Mlp.fold_star_relu`).
- :func:`mlps_as_convolutions`: folded MLPs swapped for their 1x1-convolution form
  (:class:`hyenapixel.layers.PointwiseConvMlp`; the ONNX export does it).
- :func:`to_onnx`, :func:`verify_onnx`: ONNX file with a dynamic batch, compared in onnxruntime (CPU provider).
- :class:`PerImage`: runs a long convolution image by image in exported graphs (an ONNX ``Scan`` over the batch).
- :class:`ExportError`: an unsupported model or input size (a :class:`~hyenapixel.errors.UserError`).

This layer sits above ``models`` and ``data`` and never imports ``train``, ``analysis``, ``dense`` or ``cli``;
onnx, onnxscript and onnxruntime are imported only inside the functions that need them.
"""

from hyenapixel.export.frozen import (
    ExportError,
    FrozenConv1d,
    FrozenConv2d,
    FrozenDirectConv2d,
    PerImage,
    check_input_size,
    freeze_long_convs,
    image_shape,
    mlps_as_convolutions,
)
from hyenapixel.export.onnx import OnnxCheck, onnx_session, run_onnx, to_onnx, verify_onnx

__all__ = [
    "ExportError",
    "FrozenConv1d",
    "FrozenConv2d",
    "FrozenDirectConv2d",
    "OnnxCheck",
    "PerImage",
    "check_input_size",
    "image_shape",
    "freeze_long_convs",
    "mlps_as_convolutions",
    "onnx_session",
    "run_onnx",
    "to_onnx",
    "verify_onnx",
]
