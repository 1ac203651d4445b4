"""Eltwise (SUM with coefficients, PROD, MAX) and Axpy."""
import numpy as np
import pytest

from helpers import assert_close

from ._util import check_numpy, proto


def _layer(typ, params, bottoms, top="out"):
    b = "".join(f'bottom: "{x}" ' for x in bottoms)
    return f'layer {{ name: "{top}" type: "{typ}" {b}top: "{top}" {params} }}\n'


CASES = {
    "sum": ("", lambda a, b, c: a + b + c),
    "sum_coeff": ("eltwise_param { operation: SUM coeff: 0.5 coeff: -2 coeff: 1 }", lambda a, b, c: 0.5 * a - 2 * b + c),
    "prod": ("eltwise_param { operation: PROD }", lambda a, b, c: a * b * c),
    "max": ("eltwise_param { operation: MAX }", lambda a, b, c: np.maximum(np.maximum(a, b), c)),
}


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 6)], ids=["4d", "2d"])
@pytest.mark.parametrize("key", CASES.keys())
def test_eltwise(tmp_path, key, shape):
    params, fn = CASES[key]
    text = proto(_layer("Eltwise", params, ["a", "b", "c"]), inputs={"a": shape, "b": shape, "c": shape})
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {"out": fn(x["a"], x["b"], x["c"])})
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


def test_eltwise_mixed_layouts(tmp_path):
    """A flattened NHWC tensor added to a Caffe-ordered one is reordered first."""
    body = ('layer { name: "flat" type: "Flatten" bottom: "a" top: "flat" }\n'
            + _layer("Eltwise", "eltwise_param { coeff: 1 coeff: 3 }", ["flat", "b"]))
    text = proto(body, inputs={"a": (2, 3, 2, 4), "b": (2, 24)})
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {"out": x["a"].reshape(2, -1) + 3 * x["b"]})
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("ashape", [(2, 3, 1, 1), (2, 3)])
def test_axpy(tmp_path, ashape):
    """Axpy (SE-ResNet's fork layer): top = a * x + y with a per-channel a."""
    text = proto(_layer("Axpy", "", ["a", "x", "y"]), inputs={"a": ashape, "x": (2, 3, 4, 5), "y": (2, 3, 4, 5)})
    check_numpy(tmp_path, text, lambda c, x: {"out": x["a"].reshape(2, 3, 1, 1) * x["x"] + x["y"]})
