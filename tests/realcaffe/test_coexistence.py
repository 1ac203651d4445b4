"""Real pycaffe and bnconvert in one process, in either import order (issue 12 §2): each runs, both
schemas read the same files identically, and the converted model matches real Caffe."""
import subprocess
import sys

import pytest

from helpers import ROOT, need_shared

SCRIPT = r"""
import sys
import numpy as np

def caffe_first_half():
    import caffe
    from caffe.proto import caffe_pb2 as bvlc
    return caffe, bvlc

def bnconvert_first_half():
    from bnconvert.c2k import convert_caffe
    from bnconvert.caffe.io import pb2, read_caffemodel, read_prototxt
    from bnconvert.testing import run_keras
    return convert_caffe, pb2, read_caffemodel, read_prototxt, run_keras

order, case = sys.argv[1:3]
if order == "caffe-first":
    caffe, bvlc = caffe_first_half()
    convert_caffe, pb2, read_caffemodel, read_prototxt, run_keras = bnconvert_first_half()
else:
    convert_caffe, pb2, read_caffemodel, read_prototxt, run_keras = bnconvert_first_half()
    caffe, bvlc = caffe_first_half()
from google.protobuf import text_format

proto, weights = f"{case}/deploy.prototxt", f"{case}/weights.caffemodel"
theirs = text_format.Parse(open(proto).read(), bvlc.NetParameter())
assert read_prototxt(proto).SerializeToString() == theirs.SerializeToString()
raw = open(weights, "rb").read()
assert read_caffemodel(weights).SerializeToString() == bvlc.NetParameter.FromString(raw).SerializeToString() == raw
x = dict(np.load(f"{case}/input.npz"))
caffe.set_mode_cpu()
net = caffe.Net(proto, caffe.TEST, weights=weights)
for k, v in x.items():
    net.blobs[k].data[...] = v
out = net.forward()
model, report = convert_caffe(proto, weights)
got = dict(zip(report["outputs"], run_keras(model, x, list(report["inputs"]))))
for name, ref in out.items():
    err = np.abs(got[name] - ref).max() / max(1.0, np.abs(ref).max())
    assert got[name].shape == ref.shape and err <= 1e-4, (name, err)
print("ok", order, sorted(out), pb2().Phase.Name(bvlc.TEST))
"""


@pytest.mark.parametrize("order", ["caffe-first", "bnconvert-first"])
def test_pycaffe_and_bnconvert_in_one_process(pycaffe, tmp_path, order):
    case = need_shared("caffe-ref") / "bn_factor"
    env = pycaffe.env()
    env["PYTHONPATH"] = f"{ROOT}:{env['PYTHONPATH']}"
    res = subprocess.run([sys.executable, "-c", SCRIPT, order, str(case)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines()[-1].startswith(f"ok {order} ")


def test_pycaffe_stays_out_of_the_test_process(pycaffe):
    """The tier runs pycaffe in its worker only: 'import caffe' in this process (which bnconvert's verify
    looks for) is exactly what it was before the tier ran, for every later test of the session."""
    import os

    on_path = str(pycaffe.python_path) in os.environ.get("PYTHONPATH", "").split(os.pathsep)
    assert on_path or str(pycaffe.python_path) not in sys.path
    # tests/caffe (the tests of bnconvert/caffe) may sit in sys.modules as "caffe"; pycaffe must not
    mod = sys.modules.get("caffe")
    assert on_path or mod is None or not hasattr(mod, "Net"), getattr(mod, "__file__", mod)
