"""Convolution, ConvolutionDepthwise, Deconvolution and InnerProduct against OpenCV dnn and numpy."""
import numpy as np
import pytest

from helpers import assert_close

from ._util import check_numpy, check_opencv, convert, inputs_for, proto


def conv_ref(x, w, b, stride=(1, 1), pad=(0, 0), dil=(1, 1), group=1):
    """Caffe's convolution, written directly from its definition."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (wd + 2 * pad[1] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dil[0]: i * dil[0] + stride[0] * (oh - 1) + 1: stride[0],
                           j * dil[1]: j * dil[1] + stride[1] * (ow - 1) + 1: stride[1]]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[g * og:(g + 1) * og, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out.astype(np.float32)


def deconv_ref(x, w, b, stride, pad, dil=(1, 1), group=1):
    """Caffe's deconvolution: scatter every input pixel times the kernel, then cut the padding."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // group
    fh, fw = stride[0] * (h - 1) + dil[0] * (kh - 1) + 1, stride[1] * (wd - 1) + dil[1] * (kw - 1) + 1
    full = np.zeros((n, og * group, fh, fw))
    for g in range(group):
        xs = x[:, g * cg:(g + 1) * cg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("nchw,co->nohw", xs, w[g * cg:(g + 1) * cg, :, i, j])
                full[:, g * og:(g + 1) * og, i * dil[0]: i * dil[0] + stride[0] * (h - 1) + 1: stride[0],
                     j * dil[1]: j * dil[1] + stride[1] * (wd - 1) + 1: stride[1]] += contrib
    out = full[:, :, pad[0]: fh - pad[0], pad[1]: fw - pad[1]]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out.astype(np.float32)


def _conv(params, num_output=4, bias=True, typ="Convolution", name="conv"):
    bt = "" if bias else "bias_term: false"
    return (f'layer {{ name: "{name}" type: "{typ}" bottom: "data" top: "{name}" '
            f'convolution_param {{ num_output: {num_output} {params} {bt} }} }}\n')


CONV_CASES = {
    "k3": "kernel_size: 3",
    "k3_pad1": "kernel_size: 3 pad: 1",
    "k3_s2_pad1": "kernel_size: 3 stride: 2 pad: 1",
    "k2_s2": "kernel_size: 2 stride: 2",
    "k4_s3_pad2": "kernel_size: 4 stride: 3 pad: 2",
    "hw": "kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0",
    "hw_lists": "kernel_size: 1 kernel_size: 3 stride: 1 stride: 2 pad: 0 pad: 1",
    "dilation2": "kernel_size: 3 dilation: 2 pad: 2",
    "dilation_hw": "kernel_size: 3 dilation: 2 dilation: 1 pad: 1",
    "k1": "kernel_size: 1",
    "pad_gt_half": "kernel_size: 3 pad: 2",
}


@pytest.mark.parametrize("params", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_convolution_geometry_matches_opencv(tmp_path, params):
    check_opencv(tmp_path, proto(_conv(params), shape=(2, 3, 11, 9)))


@pytest.mark.parametrize("group,num_output", [(3, 6), (6, 6), (6, 12), (2, 4)], ids=["group3", "depthwise", "depth_mult2", "group2"])
def test_convolution_groups(tmp_path, group, num_output):
    case, x, got = check_opencv(tmp_path, proto(_conv(f"kernel_size: 3 pad: 1 group: {group}", num_output),
                                                shape=(2, 6, 7, 7)))
    w, b = case.blobs("conv")
    assert_close(got["conv"], conv_ref(x["data"], w, b, pad=(1, 1), group=group), "numpy")
    if group == 6:
        kinds = {type(layer).__name__ for layer in case.model.layers}
        assert "DepthwiseConv2D" in kinds


def test_convolution_no_bias(tmp_path):
    case, x, got = check_opencv(tmp_path, proto(_conv("kernel_size: 3", bias=False)))
    assert len(case.blobs("conv")) == 1
    assert_close(got["conv"], conv_ref(x["data"], case.blobs("conv")[0], None), "numpy")


@pytest.mark.parametrize("stride,dil,pad", [((2, 2), (2, 2), (2, 2)), ((3, 1), (1, 2), (1, 2)), ((2, 1), (2, 2), (0, 1))])
def test_convolution_stride_with_dilation(tmp_path, stride, dil, pad):
    params = (f"kernel_size: 3 stride_h: {stride[0]} stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} "
              f"dilation: {dil[0]} dilation: {dil[1]}")
    case, x, got = check_opencv(tmp_path, proto(_conv(params), shape=(2, 3, 13, 12)))
    w, b = case.blobs("conv")
    assert_close(got["conv"], conv_ref(x["data"], w, b, stride, pad, dil), "numpy")


@pytest.mark.parametrize("mult", [1, 2])
def test_convolution_depthwise_fork_layer(tmp_path, mult):
    """ConvolutionDepthwise (a fork layer) equals a Convolution with group = channels."""
    body = _conv(f"kernel_size: 3 stride: 2 pad: 1", 4 * mult, typ="ConvolutionDepthwise")
    case, x, got = check_numpy(
        tmp_path, proto(body, shape=(2, 4, 9, 9)),
        lambda c, x: {"conv": conv_ref(x["data"], *c.blobs("conv"), stride=(2, 2), pad=(1, 1), group=4)})
    # OpenCV does not know the fork type; the same weights in a grouped Convolution agree with it.
    plain = tmp_path / "plain.prototxt"
    plain.write_text(case.path.read_text().replace("ConvolutionDepthwise", "Convolution")
                     .replace("pad: 1", "pad: 1 group: 4"))
    case.path = plain
    assert_close(got["conv"], case.opencv(x)["conv"], "opencv")


def test_convolution_batch_and_input_size(tmp_path):
    """A converted model runs at any batch size, and converts at an input size other than the declared one."""
    text = proto(_conv("kernel_size: 3 stride: 2 pad: 1") +
                 'layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" '
                 'pooling_param { pool: AVE kernel_size: 3 stride: 2 } }\n', shape=(1, 3, 8, 8))
    case = convert(tmp_path, text)
    for batch in (1, 3):
        x = inputs_for(case, batch=batch)
        assert_close(case.run(x)["pool"], case.opencv(x)["pool"], f"batch {batch}")
    big = convert(tmp_path, text, input_shapes={"data": (2, 3, 15, 13)}, name="big.prototxt")
    assert big.report["inputs"]["data"] == [2, 3, 15, 13]
    x = inputs_for(big)
    got = big.run(x)["pool"]
    assert got.shape == (2, 4, 4, 3)
    w, b = big.blobs("conv")
    y = conv_ref(x["data"], w, b, (2, 2), (1, 1))
    # Caffe AVE pooling, kernel 3 stride 2, no pad, ceil rounding: the last column window overhangs.
    assert_close(got[:, :, :3, :3], np.stack([[y[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].mean(axis=(2, 3))
                                                for j in range(3)] for i in range(3)]).transpose(2, 3, 0, 1), "pool")


# --- Deconvolution ---------------------------------------------------------------------------------------

DECONV_CASES = {
    "k4_s2_pad1": ("kernel_size: 4 stride: 2 pad: 1", (2, 2), (1, 1), (1, 1), 1),
    "k3_s1": ("kernel_size: 3", (1, 1), (0, 0), (1, 1), 1),
    "k2_s3_stride_gt_kernel": ("kernel_size: 2 stride: 3", (3, 3), (0, 0), (1, 1), 1),
    "k1_s2": ("kernel_size: 1 stride: 2", (2, 2), (0, 0), (1, 1), 1),
    "hw": ("kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0", (2, 3), (1, 0), (1, 1), 1),
    "pad2": ("kernel_size: 5 stride: 2 pad: 2", (2, 2), (2, 2), (1, 1), 1),
    "group2": ("kernel_size: 4 stride: 2 pad: 1 group: 2", (2, 2), (1, 1), (1, 1), 2),
    "depthwise": ("kernel_size: 3 stride: 2 group: 4", (2, 2), (0, 0), (1, 1), 4),
    "dilation2": ("kernel_size: 3 dilation: 2 pad: 1", (1, 1), (1, 1), (2, 2), 1),
}


@pytest.mark.parametrize("params,stride,pad,dil,group", DECONV_CASES.values(), ids=DECONV_CASES.keys())
def test_deconvolution(tmp_path, params, stride, pad, dil, group):
    text = proto(_conv(params, num_output=4, typ="Deconvolution"), shape=(2, 4, 5, 6))
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {
        "conv": deconv_ref(x["data"], *c.blobs("conv"), stride=stride, pad=pad, dil=dil, group=group)})
    if dil == (1, 1):  # OpenCV ignores a Deconvolution's dilation (its output is 5x6 here, Caffe's 7x8)
        assert_close(got["conv"], case.opencv(x)["conv"], "opencv")


def bilinear_kernel(channels, k):
    """Caffe's "bilinear" filler for an FCN upsampling deconvolution (one kernel per channel)."""
    f = np.ceil(k / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    og = np.arange(k)
    filt = (1 - np.abs(og / f - c))
    return np.tile(np.outer(filt, filt)[None, None], (channels, 1, 1, 1)).astype(np.float32)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_deconvolution_fcn_bilinear_upsampling(tmp_path, factor):
    """FCN's fixed bilinear upsampling (Caffe's recipe: group = channels, kernel 2f - f%2, stride f,
    pad ceil((f-1)/2), bias_term false) gives an f-times larger map that interpolates exactly."""
    from bnconvert.c2k import convert_caffe
    from bnconvert.caffe.io import array_to_blob, pb2, write_caffemodel

    k, pad = 2 * factor - factor % 2, int(np.ceil((factor - 1) / 2.0))
    text = proto(_conv(f"kernel_size: {k} stride: {factor} pad: {pad} group: 3 weight_filler {{ type: \"bilinear\" }}",
                       num_output=3, bias=False, typ="Deconvolution", name="up"), shape=(2, 3, 5, 4))
    path = tmp_path / "up.prototxt"
    path.write_text(text)
    w = bilinear_kernel(3, k)
    weights = pb2().NetParameter(name="t")
    array_to_blob(w, weights.layer.add(name="up", type="Deconvolution").blobs.add())
    write_caffemodel(weights, str(tmp_path / "up.caffemodel"))
    model, report = convert_caffe(str(path), str(tmp_path / "up.caffemodel"))
    from bnconvert.testing import run_keras

    x = {"data": np.random.default_rng(3).standard_normal((2, 3, 5, 4)).astype(np.float32)}
    got = run_keras(model, x, ["data"])[0]
    assert got.shape == (2, 3, 5 * factor, 4 * factor)
    assert_close(got, deconv_ref(x["data"], w, None, (factor, factor), (pad, pad), group=3), "numpy")
    import cv2

    cvnet = cv2.dnn.readNetFromCaffe(str(path), str(tmp_path / "up.caffemodel"))
    cvnet.setInput(x["data"], "data")
    assert_close(got, cvnet.forward("up"), "opencv")
    # Bilinear weights form a partition of unity: a constant map stays constant away from the border.
    ones = {"data": np.full((1, 3, 5, 4), 2.5, np.float32)}
    up = run_keras(model, ones, ["data"])[0]
    assert_close(up[:, :, factor:-factor, factor:-factor], np.full_like(up[:, :, factor:-factor, factor:-factor], 2.5),
                 "constant")


# --- InnerProduct ----------------------------------------------------------------------------------------

def _ip(num_output, extra="", bottom="data", name="fc"):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f'inner_product_param {{ num_output: {num_output} {extra} }} }}\n')


def test_inner_product_implicit_flatten_of_4d(tmp_path):
    """A 4-d bottom is flattened in C,H,W order, as Caffe does."""
    case, x, got = check_opencv(tmp_path, proto(_ip(7), shape=(2, 3, 4, 5)))
    w, b = case.blobs("fc")
    assert_close(got["fc"], x["data"].reshape(2, -1) @ w.T + b, "numpy")


def test_inner_product_after_convolution_and_two_batches(tmp_path):
    text = proto(_conv("kernel_size: 3 pad: 1", 5) + _ip(6, bottom="conv") +
                 _ip(3, bottom="fc", name="fc2", extra="bias_term: false"), shape=(2, 3, 4, 3))
    case = convert(tmp_path, text)
    for batch in (1, 4):
        x = inputs_for(case, batch=batch)
        assert_close(case.run(x)["fc2"], case.opencv(x)["fc2"], f"batch {batch}")


@pytest.mark.parametrize("axis,shape", [(2, (2, 3, 4, 5)), (-1, (2, 3, 4, 5)), (1, (2, 6)), (1, (2, 3, 5)), (2, (2, 3, 5))])
def test_inner_product_axis(tmp_path, axis, shape):
    def ref(c, x):
        w, b = c.blobs("fc")
        a = x["data"]
        ax = axis % a.ndim
        flat = a.reshape(a.shape[:ax] + (-1,))
        return {"fc": flat @ w.T + b}

    case, x, got = check_numpy(tmp_path, proto(_ip(4, f"axis: {axis}"), shape=shape), ref)
    assert_close(got["fc"], case.opencv(x)["fc"], "opencv")


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 6)])
def test_inner_product_transpose(tmp_path, shape):
    """transpose: true stores the weights K,O (OpenCV ignores the flag, so the reference is numpy)."""
    def ref(c, x):
        w, b = c.blobs("fc")
        assert w.shape == (int(np.prod(shape[1:])), 4)
        return {"fc": x["data"].reshape(shape[0], -1) @ w + b}

    check_numpy(tmp_path, proto(_ip(4, "transpose: true"), shape=shape), ref)
