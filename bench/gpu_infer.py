"""Converted-model inference speed on a GPU, with the Keras JAX backend.

The lent GPU machine has JAX but no TensorFlow, so this benchmark runs Keras 3 on JAX there:
the converted Caffe ResNet-50 (full size, random weights with realistic BatchNorm statistics,
generated on the machine) against ``keras.applications.ResNet50(weights=None)``, batch 1 and 16,
each call jit-compiled, rounds interleaved, median images/s. Also the same with --fold-bn.

    KERAS_BACKEND=jax python bench/gpu_infer.py --prototxt ResNet-50-deploy.prototxt --out results.json

(``tools/gpu_verify.sh`` shows how the Keras wheels are carried to the machine.)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def _jitted(model):
    import jax

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    fn = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
    return lambda x: fn(tv, ntv, x)


def _rate(call, x, seconds):
    call(x).block_until_ready()  # compile
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        out = call(x)
        n += 1
    out.block_until_ready()
    return n * x.shape[0] / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prototxt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args(argv)
    import jax
    import keras

    from bnconvert.c2k import convert_net
    from bnconvert.caffe.graph import load_net
    from bnconvert.fold import fold_batchnorm
    from bnconvert.testing import random_caffemodel

    with tempfile.TemporaryDirectory() as d:
        cm = os.path.join(d, "resnet50.caffemodel")
        random_caffemodel(a.prototxt, cm, seed=0)
        converted = convert_net(load_net(a.prototxt, cm), progress=False)[0]
        net = load_net(a.prototxt, cm)
        fold_batchnorm(net)
        folded = convert_net(net, progress=False)[0]
    native = keras.applications.ResNet50(weights=None)
    models = {"native": _jitted(native), "converted": _jitted(converted), "folded": _jitted(folded)}
    rows = []
    for batch in (1, 16):
        x = np.random.default_rng(0).normal(size=(batch, 224, 224, 3)).astype(np.float32)
        rates = {k: [] for k in models}
        for _ in range(a.rounds):
            for k, call in models.items():
                rates[k].append(_rate(call, x, a.seconds))
        med = {k: statistics.median(v) for k, v in rates.items()}
        rows.append({"batch": batch, "images_per_s": med,
                     "converted_x_native": med["converted"] / med["native"],
                     "folded_x_native": med["folded"] / med["native"]})
        print(f"batch {batch:>2}: native {med['native']:.1f} img/s, converted {med['converted']:.1f} "
              f"({med['converted'] / med['native']:.3f}x), folded {med['folded']:.1f} "
              f"({med['folded'] / med['native']:.3f}x)", flush=True)
    result = {"device": str(jax.devices()[0]), "device_kind": jax.devices()[0].device_kind,
              "jax": jax.__version__, "keras": keras.__version__, "backend": keras.backend.backend(),
              "rounds": a.rounds, "seconds_per_round": a.seconds, "rows": rows}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
