"""The bundled sample models convert and match OpenCV dnn (an independent Caffe runtime)."""
import pytest

from helpers import ROOT, assert_close

import bnconvert
from bnconvert.caffe import load_net, write_prototxt
from bnconvert.caffe.deploy import deploy_net_param
from bnconvert.testing import random_inputs, run_keras, run_opencv

SAMPLES = [("mini_resnet/deploy.prototxt", "mini_resnet/weights.caffemodel", 6, 0),
           ("cifar_bn/cifar_bn.prototxt", "cifar_bn/cifar_bn.caffemodel", 0, 2)]


@pytest.mark.parametrize("proto,weights,pairs,bn_only", SAMPLES)
def test_sample_converts_and_matches_opencv(tmp_path, proto, weights, pairs, bn_only):
    proto, weights = ROOT / "sample_models" / proto, ROOT / "sample_models" / weights
    net = load_net(proto, weights)
    factors = [L.blobs[2][0] for L in net.layers if L.type == "BatchNorm"]
    assert factors and all(abs(s - 1) > 1 for s in factors)
    model, report = bnconvert.convert_caffe(proto, weights)
    assert len(report["batchnorm_scale_pairs"]) == pairs
    assert len(report["batchnorm_without_scale"]) == bn_only
    deploy = tmp_path / "deploy.prototxt"  # OpenCV ignores phase rules: give it the TEST graph
    write_prototxt(deploy_net_param(net), deploy)
    for batch in (1, 3):
        inputs = random_inputs(net, seed=batch, batch=batch)
        ref = run_opencv(deploy, weights, inputs, list(report["outputs"]))
        outs = run_keras(model, inputs, report["inputs"])
        for name, out in zip(report["outputs"], outs):
            assert_close(out, ref[name], name)
