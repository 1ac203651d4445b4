"""ArgMax and Reduction."""
import numpy as np
import pytest

from ._util import check_numpy, proto


def _layer(typ, params):
    return f'layer {{ name: "out" type: "{typ}" bottom: "data" top: "out" {params} }}\n'


def caffe_argmax(x, top_k=1, out_max_val=False, axis=None):
    """Caffe's ArgMaxLayer::Forward_cpu (largest first; no ties in random data)."""
    if axis is None:
        flat = x.reshape(x.shape[0], -1)
        idx = np.argsort(-flat, axis=1, kind="stable")[:, :top_k]
        vals = np.take_along_axis(flat, idx, 1)
        out = np.stack([idx, vals], 1) if out_max_val else idx[:, None]
        return out.reshape((x.shape[0], out.shape[1], top_k) + (1,) * max(0, x.ndim - 3)).astype(np.float32)
    idx = np.argsort(-x, axis=axis, kind="stable").take(range(top_k), axis=axis)
    return (np.take_along_axis(x, idx, axis) if out_max_val else idx).astype(np.float32)


@pytest.mark.parametrize("params,kw,shape", [
    ("argmax_param { axis: 1 }", dict(axis=1), (2, 5, 3, 4)),
    ("argmax_param { axis: 1 top_k: 3 }", dict(axis=1, top_k=3), (2, 5, 3, 4)),
    ("argmax_param { axis: 2 top_k: 2 out_max_val: true }", dict(axis=2, top_k=2, out_max_val=True), (2, 5, 3, 4)),
    ("argmax_param { axis: -1 }", dict(axis=3), (2, 5, 3, 4)),
    ("argmax_param { axis: 1 top_k: 2 }", dict(axis=1, top_k=2), (3, 7)),
    ("", dict(), (3, 7)),
    ("argmax_param { top_k: 3 }", dict(top_k=3), (3, 7)),
    ("argmax_param { top_k: 2 out_max_val: true }", dict(top_k=2, out_max_val=True), (3, 7)),
    ("", dict(), (2, 3, 4, 5)),
    ("argmax_param { top_k: 2 out_max_val: true }", dict(top_k=2, out_max_val=True), (2, 3, 4, 5)),
], ids=["axis1", "axis1_top3", "axis2_maxval", "axis_neg", "2d_axis", "2d_noaxis", "2d_top3", "2d_maxval",
        "4d_noaxis", "4d_noaxis_maxval"])
def test_argmax(tmp_path, params, kw, shape):
    check_numpy(tmp_path, proto(_layer("ArgMax", params), shape=shape),
                lambda c, x: {"out": caffe_argmax(x["data"], **kw)})


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis,shape", [(1, (2, 3, 4, 5)), (2, (2, 3, 4, 5)), (-1, (2, 3, 4, 5)), (3, (2, 3, 4, 5)),
                                        (1, (3, 6)), (2, (2, 3, 4))])
def test_reduction(tmp_path, op, axis, shape):
    params = f"reduction_param {{ operation: {op} axis: {axis} coeff: 0.5 }}"
    fns = {"SUM": lambda v: v.sum(-1), "ASUM": lambda v: np.abs(v).sum(-1), "SUMSQ": lambda v: (v ** 2).sum(-1),
           "MEAN": lambda v: v.mean(-1)}

    def ref(c, x):
        a = axis % len(shape)
        d = x["data"].astype(np.float64)
        return {"out": (0.5 * fns[op](d.reshape(shape[:a] + (-1,)))).astype(np.float32)}

    check_numpy(tmp_path, proto(_layer("Reduction", params), shape=shape), ref)


def test_a_converter_giving_fewer_outputs_than_tops_names_file_and_layer():
    from types import SimpleNamespace

    from bnconvert.c2k import _normalize_result
    from bnconvert.errors import ConversionError

    L = SimpleNamespace(name="p", type="Pooling")
    with pytest.raises(ConversionError) as e:
        _normalize_result(["x"], 2, L, "net.prototxt")
    assert str(e.value).startswith("net.prototxt: layer 'p' (type Pooling): 2 tops, but its converter gives 1")
