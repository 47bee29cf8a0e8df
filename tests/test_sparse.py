"""conv_to_sparse against the dense convolution in every TensorOrder (SPEC section 7)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import conv_reference, sparse_reference
from strategies import geometries, int8_weights, seeds, spikes

from lavaconv.utils import TensorOrder, conv_to_sparse


def to_order(order, x, w, y, g):
    """Express a Lava-layout problem (x, W, y, params in (X, Y)) in ``order``'s layout.

    Written from SPEC section 1/7: PyTorch kernels are correlation kernels
    ``W_torch = W_lava.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]``; TensorFlow's HWCN
    kernel is the PyTorch one with axes (kH, kW, Cg, C_out); CHWN is a convolution
    kernel ``(C_out, kH, kW, Cg)``.
    """
    rev = lambda p: tuple(p)[::-1]  # noqa: E731
    if order == TensorOrder.NWHC:
        return x, w, y, g["stride"], g["padding"], g["dilation"]
    w_torch = w.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1]
    params = rev(g["stride"]), rev(g["padding"]), rev(g["dilation"])
    if order == TensorOrder.NCHW:
        return (x.transpose(2, 1, 0), w_torch, y.transpose(2, 1, 0)) + params
    if order == TensorOrder.CHWN:
        return (x.transpose(2, 1, 0), w.transpose(0, 2, 1, 3), y.transpose(2, 1, 0)) + params
    return (x.transpose(1, 0, 2), w_torch.transpose(2, 3, 1, 0), y.transpose(1, 0, 2)) + params


@pytest.mark.parametrize("order", list(TensorOrder))
@given(g=geometries(max_size=8), seed=seeds())
def test_sparse_product_equals_dense_conv(order, g, seed):
    rng = np.random.default_rng(seed)
    x = spikes(rng, g["input_shape"], "graded", density=0.7).astype(np.int64)
    w = int8_weights(rng, g["weight_shape"])
    y = conv_reference(x, w, g["stride"], g["padding"], g["dilation"], g["groups"])
    xo, wo, yo, stride, padding, dilation = to_order(order, x, w, y, g)
    dst, src, wgt = conv_to_sparse(xo.shape, yo.shape, np.ascontiguousarray(wo), stride,
                                   padding, dilation, g["groups"], order)
    assert dst.dtype == src.dtype == np.int64 and wgt.dtype == np.int8
    m = sp.coo_matrix((wgt.astype(np.int64), (dst, src)), shape=(yo.size, xo.size))
    np.testing.assert_array_equal(m @ xo.ravel(), yo.ravel())
    # no connection is listed twice
    assert len(np.unique(dst * xo.size + src)) == len(dst)


@given(g=geometries(max_size=5, max_groups=2), seed=seeds())
def test_sparse_matrix_equals_unit_response_matrix(g, seed):
    """Every entry, zero weights included, against the one-hot construction."""
    rng = np.random.default_rng(seed)
    w = int8_weights(rng, g["weight_shape"])
    out_shape = conv_reference(np.zeros(g["input_shape"], np.int64), w, g["stride"],
                               g["padding"], g["dilation"], g["groups"]).shape
    dst, src, wgt = conv_to_sparse(g["input_shape"], out_shape, w, g["stride"], g["padding"],
                                   g["dilation"], g["groups"])
    dense = np.zeros((int(np.prod(out_shape)), int(np.prod(g["input_shape"]))), np.int64)
    dense[dst, src] = wgt
    np.testing.assert_array_equal(dense, sparse_reference(g["input_shape"], w, g["stride"],
                                                          g["padding"], g["dilation"],
                                                          g["groups"]))


def test_known_answer_hwcn_indices():
    """HWCN, H=1, W=3, C=1 in and C_out=2 out, 1x1 kernel: out[y, x, k] = W[0,0,0,k] in[y, x].

    dst_id(x, y, c) = (y * W_out + x) * C_out + c, so input pixel x=2 (src 2) feeds
    dst 2*2 + 0 = 4 and 2*2 + 1 = 5 (Lava 0.10 multiplied x by H_out = 1 instead of
    C_out = 2 and got 2 and 3).
    """
    kernel = np.array([[[[7, 9]]]], np.int32)  # (kH, kW, Cg, C_out)
    dst, src, wgt = conv_to_sparse((1, 3, 1), (1, 3, 2), kernel, 1, 0, 1, 1, TensorOrder.HWCN)
    triples = sorted(zip(dst.tolist(), src.tolist(), wgt.tolist(), strict=True))
    assert triples == [(0, 0, 7), (1, 0, 9), (2, 1, 7), (3, 1, 9), (4, 2, 7), (5, 2, 9)]


def test_chwn_non_square_kernel():
    """CHWN with a 1x2 (kH x kW) kernel: out[0, 0, x] = K[0,0,0,0]*in[x+1] + K[0,0,1,0]*in[x].

    Convolution along W: tap kw multiplies input x + 1 - kw (padding 0, 2 wide),
    so out[x] = K[.., 0, ..] * in[x + 1] + K[.., 1, ..] * in[x].
    """
    kernel = np.array([[[[2], [3]]]], np.int64)  # (C_out=1, kH=1, kW=2, Cg=1)
    dst, src, wgt = conv_to_sparse((1, 1, 3), (1, 1, 2), kernel, 1, 0, 1, 1, TensorOrder.CHWN)
    m = sp.coo_matrix((wgt, (dst, src)), shape=(2, 3)).toarray()
    np.testing.assert_array_equal(m, [[3, 2, 0], [0, 3, 2]])


def test_all_padding_gives_empty_int_arrays():
    """Input 1x1, padding 1, stride 2: outputs read positions -1 and 1, both padding."""
    w = np.ones((1, 1, 1, 1), np.int8)
    dst, src, wgt = conv_to_sparse((1, 1, 1), (2, 2, 1), w, 2, 1, 1, 1)
    assert dst.size == src.size == wgt.size == 0
    assert dst.dtype.kind == "i" and src.dtype.kind == "i" and wgt.dtype == np.int8


def test_int32_indices_on_request():
    w = np.ones((2, 3, 3, 2), np.int8)
    d64, s64, _ = conv_to_sparse((5, 5, 2), (3, 3, 2), w, 1, 0, 1, 1)
    d32, s32, _ = conv_to_sparse((5, 5, 2), (3, 3, 2), w, 1, 0, 1, 1, index_dtype=np.int32)
    assert d32.dtype == s32.dtype == np.int32
    np.testing.assert_array_equal(d32, d64)
    np.testing.assert_array_equal(s32, s64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(order=7), "order"),
        (dict(index_dtype=np.int16), "index_dtype"),
        (dict(output_shape=(4, 4, 2)), "output_shape"),
        (dict(output_shape=(3, 3)), "output_shape"),
        (dict(input_shape=(5, 5)), "input_shape"),
        (dict(input_shape=(5.7, 5, 2)), "input_shape"),
        (dict(input_shape=5), "input_shape"),
        (dict(output_shape=(3, 0, 2)), "output_shape"),
        (dict(group=3), "groups"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(input_shape=(5, 5, 2), output_shape=(3, 3, 2), kernel=np.ones((2, 3, 3, 2)),
                stride=1, padding=0, dilation=1, group=1)
    order = kwargs.pop("order", TensorOrder.NWHC)
    index_dtype = kwargs.pop("index_dtype", np.int64)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        conv_to_sparse(**args, order=order, index_dtype=index_dtype)


@pytest.mark.parametrize("order", list(TensorOrder))
@given(seed=st.integers(0, 2**32 - 1))
def test_float_kernel_product(order, seed):
    rng = np.random.default_rng(seed)
    g = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = rng.standard_normal((6, 5, 4))
    w = rng.standard_normal((4, 3, 2, 2))
    y = conv_reference(x, w, g["stride"], g["padding"], g["dilation"], g["groups"])
    xo, wo, yo, stride, padding, dilation = to_order(order, x, w, y, g)
    dst, src, wgt = conv_to_sparse(xo.shape, yo.shape, wo, stride, padding, dilation, 2, order)
    m = sp.coo_matrix((wgt, (dst, src)), shape=(yo.size, xo.size))
    # float64 sums of at most 12 products: well inside 1e-12 relative to the magnitudes
    np.testing.assert_allclose(m @ xo.ravel(), yo.ravel(), rtol=1e-12, atol=1e-12)
