"""hyenapixel.ops.pixel_linear and layers.PixelLinear (per-pixel linear maps by oneDNN's 1 x 1 convolutions on CPU)
against ``F.linear``: values and gradients in float64 and float32, numerical derivatives, the layouts and dtypes
the dispatch distinguishes (one or several threads, channels-last maps, non-contiguous views, other ranks), and
nn.Linear's state dict. hyenapixel.ops.star_relu against StarReLU written out (``star_relu_ref``) and its closed
form: values, in place or not, gradients, second derivatives, what backward keeps, and the cases that take the
reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyenapixel.layers import Mlp, PixelLinear, StarReLU
from hyenapixel.ops.parallel import intra_op_threads
from hyenapixel.ops.pointwise import pixel_linear, star_relu, star_relu_ref


def _grads(y: torch.Tensor, up: torch.Tensor, wrt: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad((y * up).sum(), wrt)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 1, 1, 6), (3, 6), (2, 7, 5, 6, "view")])
def test_values_and_gradients_equal_f_linear(threads: int, bias: bool, shape) -> None:
    g = torch.Generator().manual_seed(len(shape) + threads)
    if shape[-1] == "view":  # a non-contiguous (B, H, W, C) view
        x = torch.randn(*shape[:-1], generator=g, dtype=torch.float64).transpose(1, 2)
    else:
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
    x.requires_grad_()
    w = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    wrt = [t for t in (x, w, b) if t is not None]
    with intra_op_threads(threads):
        y = pixel_linear(x, w, b)
        up = torch.randn(y.shape, generator=g, dtype=torch.float64)
        got = _grads(y, up, wrt)
        assert torch.autograd.gradcheck(lambda *t: pixel_linear(*t), tuple(wrt))
    ref = F.linear(x, w, b)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(got, _grads(ref, up, wrt)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_pixel_linear_module_is_an_nn_linear_with_its_state_dict() -> None:
    ref = nn.Linear(6, 4)
    m = PixelLinear(6, 4)
    m.load_state_dict(ref.state_dict())
    assert isinstance(m, nn.Linear) and m.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(2, 3, 5, 6)
    torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_float32_maps_against_float64_linear(threads: int, bias: bool) -> None:
    """float32 channels-last maps (oneDNN's 1 x 1 convolution where torch has it) against F.linear in float64."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 5, 7, 16, generator=g, requires_grad=True)
    w = torch.randn(24, 16, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True) if bias else None
    up = torch.randn(2, 5, 7, 24, generator=g)
    with intra_op_threads(threads):
        y = pixel_linear(x, w, b)
        grads = _grads(y, up, [t for t in (x, w, b) if t is not None])
    assert y.shape == (2, 5, 7, 24) and y.dtype == torch.float32 and y.is_contiguous()  # a (B, H, W, C) map
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    bd = b.detach().double().requires_grad_() if bias else None
    ref = F.linear(xd, wd, bd)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    for a, e in zip(grads, _grads(ref, up.double(), [t for t in (xd, wd, bd) if t is not None])):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-4)


def _star_params(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([0.8], dtype=dtype, requires_grad=True), torch.tensor([-0.3], dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("grad_mode", ["no_grad", "inference", "params_frozen"])
def test_star_relu_without_autograd_equals_the_reference_bitwise(dtype, inplace: bool, grad_mode: str) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 7, 12, generator=g, dtype=dtype)
    scale, bias = (p.detach() for p in _star_params(dtype))
    closed = torch.where(x > 0, 0.8 * x * x, 0) - 0.3  # the closed form, in float64 up to rounding
    want = star_relu_ref(x, scale, bias)
    torch.testing.assert_close(want, closed.to(dtype))
    arg = x.clone()
    context = torch.inference_mode() if grad_mode == "inference" else torch.no_grad()
    if grad_mode == "params_frozen":  # grad enabled, but nothing requires it
        context = torch.enable_grad()
    with context:
        got = star_relu(arg, scale, bias, inplace=inplace)
    assert torch.equal(got, want)  # the same operations in the same order
    if inplace:
        assert got.data_ptr() == arg.data_ptr()  # overwritten and returned
    else:
        assert got.data_ptr() != arg.data_ptr() and torch.equal(arg, x)  # the input is left as it is


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("permuted", [False, True])  # contiguous: the scale's gradient as one dot product
def test_star_relu_gradients_equal_the_reference(inplace: bool, permuted: bool) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64)
    if permuted:
        x = x.permute(0, 3, 1, 2)  # a channels-last view: not contiguous (clones keep its strides)
    x[0, 0, 0, :3] = 0.0  # the kink: relu's gradient there is 0, as in the reference
    up = torch.randn(x.shape, generator=g, dtype=torch.float64)
    grads = []
    for fn in (lambda a, s, b: star_relu(a, s, b, inplace=inplace), star_relu_ref):
        arg = x.clone().requires_grad_()
        scale, bias = _star_params()
        y = fn(arg, scale, bias)
        grads.append((y, *torch.autograd.grad((y * up).sum(), (arg, scale, bias))))
        torch.testing.assert_close(arg.detach(), x, rtol=0, atol=0)  # never in place while autograd records
    for a, e in zip(*grads):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    # closed forms: dx = 2 s g relu(x), ds = sum(g relu(x)^2), db = sum(g)
    r = x.clamp_min(0)
    torch.testing.assert_close(grads[0][1], 2 * 0.8 * up * r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][2], (up * r * r).sum().reshape(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][3], up.sum().reshape(1), rtol=1e-12, atol=1e-12)


def test_star_relu_numerical_first_and_second_derivatives() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_()  # away from the kink, where finite differences are exact enough
    scale, bias = _star_params()
    assert torch.autograd.gradcheck(star_relu, (x, scale, bias))
    assert torch.autograd.gradgradcheck(star_relu, (x, scale, bias))


def _saved_maps(fn, x: torch.Tensor, *args) -> int:
    """How many distinct tensors of ``x``'s size ``fn(x, *args)`` saves for backward."""
    saved: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.numel() == x.numel():
            saved.add(t.data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, *args)
    return len(saved)


def test_star_relu_backward_keeps_one_map_where_the_reference_keeps_two() -> None:
    x = torch.randn(2, 4, 4, 8, requires_grad=True)
    scale, bias = _star_params(torch.float32)
    assert [_saved_maps(fn, x, scale, bias) for fn in (star_relu, star_relu_ref)] == [1, 2]


def test_star_relu_takes_the_reference_where_its_fast_path_cannot_hold() -> None:
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 4, generator=g)
    scale, bias = _star_params(torch.float32)
    with torch.no_grad():
        # a bias that broadcasts x to a larger shape
        wide = torch.randn(5, 1, 1, 1, generator=g)
        assert torch.equal(star_relu(x.clone(), scale, wide, inplace=True), star_relu_ref(x, scale, wide))
        # float64 parameters on a float32 map: the result is float64, as the reference's
        s64, b64 = (p.detach().double() for p in (scale, bias))
        arg = x.clone()
        got = star_relu(arg, s64, b64, inplace=True)
        assert got.dtype == torch.float64 and torch.equal(got, star_relu_ref(x, s64, b64)) and torch.equal(arg, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = x.bfloat16()
            assert torch.equal(star_relu(low.clone(), scale, bias, inplace=True), star_relu_ref(low, scale, bias))


def test_star_relu_module_in_place_only_where_asked_and_mlp_output_unchanged() -> None:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, 4, 12, generator=g)
    act, act_inplace = StarReLU(1.5, -0.2), StarReLU(1.5, -0.2, inplace=True)
    assert repr(act_inplace) == "StarReLU(inplace=True)" and repr(act) == "StarReLU()"
    arg = x.clone()
    with torch.no_grad():
        assert torch.equal(act(arg), act_inplace(arg.clone())) and torch.equal(arg, x)
    mlp = Mlp(12).eval()
    assert mlp.act.inplace  # the MLP's StarReLU overwrites fc1's output, which nothing else reads
    with torch.no_grad():
        nn.init.normal_(mlp.act.scale)
        nn.init.normal_(mlp.act.bias)
        want = mlp.fc2(star_relu_ref(mlp.fc1(x), mlp.act.scale, mlp.act.bias))
        assert torch.equal(mlp(x), want)
    mlp.train()
    arg = x.clone().requires_grad_()
    y = mlp(arg)
    y.square().sum().backward()  # in training nothing is overwritten: autograd would have refused
    assert torch.equal(y.detach(), want) and torch.equal(arg.detach(), x)
