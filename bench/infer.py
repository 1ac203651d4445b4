"""Inference speed of the converted ResNet-50 (as converted, and with --fold-bn) against
keras.applications.ResNet50(weights=None), plus what is inside each graph.

Run through ``bench/worker.py infer`` (a fresh process); ``print_tables`` formats the result.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter

import numpy as np


def _models(a):
    import keras

    from bnconvert.c2k import convert_net
    from bnconvert.caffe.graph import load_net
    from bnconvert.fold import fold_batchnorm

    converted = convert_net(load_net(a["prototxt"], a["caffemodel"]), progress=False)[0]
    net = load_net(a["prototxt"], a["caffemodel"])
    folded_layers = fold_batchnorm(net)
    folded = convert_net(net, progress=False)[0]
    native = keras.applications.ResNet50(weights=None)
    return {"native": native, "converted": converted, "folded": folded}, len(folded_layers)


def structure(model):
    """Layer counts that matter for speed: transposes, BatchNorms, custom layers, paddings."""
    kinds = Counter(type(layer).__name__ for layer in model.layers)
    custom = sorted({type(layer).__name__ for layer in model.layers if type(layer).__module__.startswith("bnconvert")})
    return {"layers": len(model.layers), "Permute": kinds.get("Permute", 0),
            "BatchNormalization": kinds.get("BatchNormalization", 0), "ZeroPadding2D": kinds.get("ZeroPadding2D", 0),
            "custom_layers": custom, "params": int(model.count_params())}


def graph_ops(model, batch=1):
    """Op histograms: the traced tf.function graph, and after grappler on the frozen graph."""
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.framework import convert_to_constants
    from tensorflow.python.grappler import tf_optimizer

    shape = (batch,) + tuple(model.inputs[0].shape[1:])
    fn = tf.function(lambda x: model(x, training=False))
    cf = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    traced = Counter(op.type for op in cf.graph.get_operations())
    frozen = convert_to_constants.convert_variables_to_constants_v2(cf)
    mg = tf.compat.v1.train.export_meta_graph(graph_def=frozen.graph.as_graph_def(), graph=frozen.graph)
    mg.collection_def["train_op"].node_list.value.extend([t.name.split(":")[0] for t in frozen.outputs])
    optimized = Counter(n.op for n in tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), mg).node)
    keep = ("Transpose", "Conv2D", "_FusedConv2D", "FusedBatchNormV3", "Rsqrt", "Mul", "AddV2", "Sub", "Pad",
            "BiasAdd", "Relu", "MatMul", "_FusedMatMul", "AvgPool", "MaxPool", "Mean", "Softmax")
    return ({k: traced.get(k, 0) for k in keep}, {k: optimized.get(k, 0) for k in keep})


def _throughput(fn, x, seconds):
    n, t0 = 0, time.perf_counter()
    while True:
        np.asarray(fn(x))  # waits for the result
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= 2:
            return n * x.shape[0] / elapsed


def speed(models, batches, rounds, seconds, jit):
    """images/s per model and batch: median over ``rounds`` interleaved rounds."""
    import tensorflow as tf

    fns = {k: tf.function(lambda x, m=m: m(x, training=False), jit_compile=jit) for k, m in models.items()}
    out = {}
    for b in batches:
        x = tf.constant(np.random.default_rng(b).standard_normal((b, 224, 224, 3)).astype(np.float32))
        for f in fns.values():
            for _ in range(3):
                f(x)
        samples = {k: [] for k in fns}
        for _ in range(rounds):
            for k, f in fns.items():
                samples[k].append(_throughput(f, x, seconds))
        out[b] = {k: {"images_per_s": statistics.median(v), "samples": v} for k, v in samples.items()}
        for k in fns:
            out[b][k]["x_native"] = round(out[b][k]["images_per_s"] / out[b]["native"]["images_per_s"], 3)
    return out


def fold_numerics(models):
    """max |folded - unfolded| on the logits (fc1000) and probabilities of a seeded batch of 2."""
    import keras

    x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype(np.float32)
    res = {}
    for layer in ("fc1000", None):
        outs = []
        for k in ("converted", "folded"):
            m = models[k]
            sub = keras.Model(m.inputs, m.get_layer(layer).output) if layer else m
            outs.append(np.asarray(sub(x, training=False), np.float64))
        d = float(np.max(np.abs(outs[0] - outs[1])))
        res[layer or "prob"] = {"max_abs_diff": d, "max_abs_ref": float(np.max(np.abs(outs[0]))),
                                "rel": d / max(1.0, float(np.max(np.abs(outs[0]))))}
    return res


def measure(a):
    import tensorflow as tf

    models, n_folded = _models(a)
    res = {"threads": {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter": tf.config.threading.get_inter_op_parallelism_threads()},
           "devices": [d.name for d in tf.config.list_logical_devices()],
           "structure": {k: structure(m) for k, m in models.items()}, "folded_batchnorms": n_folded}
    res["ops"] = {}
    for k, m in models.items():
        traced, optimized = graph_ops(m)
        res["ops"][k] = {"traced": traced, "grappler_frozen": optimized}
    res["fold_numerics"] = fold_numerics(models)
    res["speed"] = speed(models, a["batches"], a["rounds"], a["seconds"], jit=False)
    if a.get("xla"):
        res["speed_xla"] = speed(models, a["batches"], max(3, a["rounds"] // 2), a["seconds"], jit=True)
    return res


def print_tables(res):
    import common as C

    for key, label in (("speed", "tf.function"), ("speed_xla", "tf.function(jit_compile=True)")):
        if key not in res:
            continue
        rows = []
        for b, per in res[key].items():
            for k in ("native", "converted", "folded"):
                r = per[k]
                met = None if k == "native" else r["x_native"] >= 0.95
                rows.append([b, k, r["images_per_s"], r["x_native"], met])
        C.table(f"inference ResNet-50, CPU, {label} (images/s, median; floor = keras.applications.ResNet50; "
                "target >= 0.95x)", ["batch", "model", "img/s", "x native", ">=0.95"], rows)
    rows = [[k, s["layers"], s["Permute"], s["BatchNormalization"], s["ZeroPadding2D"],
             ", ".join(s["custom_layers"]) or "none", s["params"]] for k, s in res["structure"].items()]
    C.table("model structure", ["model", "layers", "Permute", "BatchNorm", "ZeroPad", "custom layers", "params"], rows)
    keys = ["Transpose", "Conv2D", "_FusedConv2D", "FusedBatchNormV3", "Rsqrt", "Mul", "AddV2", "Pad"]
    rows = [[k, g] + [res["ops"][k][g][op] for op in keys] for k in res["ops"] for g in ("traced", "grappler_frozen")]
    C.table("graph ops (batch 1): traced, and after grappler on the frozen graph", ["model", "graph"] + keys, rows)
    rows = [[k, v["max_abs_diff"], v["max_abs_ref"], v["rel"]] for k, v in res["fold_numerics"].items()]
    C.table(f"--fold-bn numerics ({res['folded_batchnorms']} BatchNorms folded; folded vs unfolded, batch 2)",
            ["output", "max |diff|", "max |ref|", "rel"], rows)
