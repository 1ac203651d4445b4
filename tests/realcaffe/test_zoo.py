"""Every ../shared/zoo net real BVLC Caffe can load, with random weights (BatchNorm factors != 1), run by
pycaffe and by the converted Keras model: every blob matches. Input sizes are test_zoo's reduced ones."""
import numpy as np
import pytest

from bnconvert.c2k import convert_caffe
from bnconvert.caffe.graph import load_net
from bnconvert.caffe.io import read_prototxt
from bnconvert.testing import random_inputs, run_keras

from c2k.test_zoo import CONVERTS, SKIPPED, _random_weights_for, opencv_prototxt
from helpers import ZOO, assert_close, need_shared

SETTINGS = {rel: (shapes, kwargs) for rel, shapes, kwargs in CONVERTS}
# The train/val twins of deploy nets (test_zoo's SKIPPED: the same layers) are left out; their deploy net runs.
NETS = sorted(str(p.relative_to(ZOO)) for p in ZOO.rglob("*.prototxt")
              if "solver" not in p.name and str(p.relative_to(ZOO)) not in SKIPPED)


def _why_bvlc_cannot_load(proto, pycaffe):
    """Why real BVLC Caffe cannot load the file (fork layer types or fields, Python layers), or None.
    pycaffe's own schema module parses the text."""
    error = pycaffe.parse_error(proto)
    if error:
        return f"BVLC's schema rejects it: {error}"
    net = read_prototxt(str(proto))
    missing = sorted({L.type for L in net.layer} - set(pycaffe.layer_types))
    return f"BVLC Caffe lacks its layer types {missing}" if missing else None


@pytest.mark.parametrize("rel", NETS, ids=[r.replace("/", ":") for r in NETS])
def test_zoo_net_every_blob_matches_real_caffe(pycaffe, tmp_path, rel):
    proto = need_shared("zoo") / rel
    why = _why_bvlc_cannot_load(proto, pycaffe)
    if why:
        pytest.skip(f"real Caffe cannot load {rel}: {why}")
    assert rel in SETTINGS, f"{rel}: real Caffe loads it, but tests/c2k/test_zoo.py's CONVERTS gives no input size"
    shapes, kwargs = SETTINGS[rel]
    cm = tmp_path / "w.caffemodel"
    _random_weights_for(load_net(str(proto), input_shapes=shapes, **kwargs), cm)
    net = load_net(str(proto), str(cm), input_shapes=shapes, **kwargs)
    # real Caffe gets the inference net of the phase/stages, with Input layers for the data layers
    deploy = opencv_prototxt(net, tmp_path / "deploy.prototxt")
    x = random_inputs(net, seed=2)
    blobs = pycaffe.forward(deploy, cm, x, tmp_path)
    names = [n for n in blobs if n not in x]
    assert set(names) <= set(net.caffe_name.values()), sorted(set(names) - set(net.caffe_name.values()))
    model, report = convert_caffe(str(proto), str(cm), input_shapes=shapes, outputs=names, **kwargs)
    assert list(report["outputs"]) == names
    got = run_keras(model, x, list(report["inputs"]))
    for name, value in zip(names, got):
        assert_close(value, blobs[name], name)
    for b in net.outputs:
        ref = blobs[net.caffe_name[b]]
        assert np.abs(ref).max() > 0, f"{b}: real Caffe's output is all zeros, the comparison would be vacuous"
