"""One benchmark measurement in a fresh interpreter: ``python bench/worker.py TASK JSON_ARGS``.

Prints ``BENCH_RESULT {json}`` as its last line. Peak memory is this process's own VmHWM.
Keras is imported before the clock starts in every task that needs it, floors included, so
``work_s`` compares the work itself; ``base_hwm_mib`` is the peak right after the imports.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MARK = "BENCH_RESULT "


def hwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return None


def emit(res):
    res["hwm_mib"] = hwm_mib()
    print(MARK + json.dumps(res), flush=True)


def task_make_caffemodel(a):
    from bnconvert.testing import random_caffemodel

    out = Path(a["out"])
    tmp = out.with_suffix(".caffemodel.tmp")
    random_caffemodel(a["prototxt"], tmp, seed=a.get("seed", 0))
    if a.get("v1"):
        _to_v1(tmp)
    os.replace(tmp, out)
    emit({"bytes": out.stat().st_size})


def _to_v1(path):
    """Rewrite a V2 caffemodel as V1 ``layers`` (as the model-zoo VGG files are)."""
    from bnconvert.caffe.io import pb2, read_caffemodel, write_caffemodel
    from bnconvert.caffe.upgrade import V2_TO_V1

    v2 = read_caffemodel(path)
    v1 = pb2().NetParameter(name=v2.name)
    enum = pb2().V1LayerParameter.LayerType
    for lp in v2.layer:
        v1.layers.add(name=lp.name, type=enum.Value(V2_TO_V1[lp.type])).blobs.extend(lp.blobs)
    del v2
    write_caffemodel(v1, path)


def _import_keras():
    import keras  # noqa: F401

    import bnconvert.c2k  # noqa: F401


def task_convert(a):
    """bnconvert: load_net (+ fold) + convert_net + save, as ``bnconvert caffe2keras`` does."""
    _import_keras()
    from bnconvert.c2k import convert_net
    from bnconvert.caffe.graph import load_net

    base = hwm_mib()
    t0 = time.perf_counter()
    net = load_net(a["prototxt"], a["caffemodel"])
    t1 = time.perf_counter()
    if a.get("fold"):
        from bnconvert.fold import fold_batchnorm

        fold_batchnorm(net)
    model, _, _ = convert_net(net, progress=False)
    t2 = time.perf_counter()
    model.save(a["out"])
    t3 = time.perf_counter()
    emit({"work_s": t3 - t0, "load_s": t1 - t0, "convert_s": t2 - t1, "save_s": t3 - t2, "base_hwm_mib": base,
          "params": int(model.count_params())})


def task_floor_convert(a):
    """Floor: protobuf-parse the caffemodel + build the keras.applications model + save it."""
    _import_keras()
    import keras

    from bnconvert.caffe.io import read_caffemodel

    base = hwm_mib()
    t0 = time.perf_counter()
    parsed = read_caffemodel(a["caffemodel"])  # kept alive while the model is built, like a converter's source
    t1 = time.perf_counter()
    model = getattr(keras.applications, a["app"])(weights=None)
    t2 = time.perf_counter()
    model.save(a["out"])
    t3 = time.perf_counter()
    del parsed
    emit({"work_s": t3 - t0, "load_s": t1 - t0, "convert_s": t2 - t1, "save_s": t3 - t2, "base_hwm_mib": base,
          "params": int(model.count_params())})


def task_k2c(a):
    """keras2caffe of a keras.applications model, or the floor ``model.save_weights``."""
    _import_keras()
    import keras

    model = getattr(keras.applications, a["app"])(weights=None)
    base = hwm_mib()
    out = Path(a["outdir"])
    t0 = time.perf_counter()
    if a["mode"] == "floor":
        model.save_weights(str(out / f"{a['app']}.weights.h5"))
    else:
        import bnconvert

        bnconvert.keras_to_caffe(model, str(out / f"{a['app']}.prototxt"), str(out / f"{a['app']}.caffemodel"))
    emit({"work_s": time.perf_counter() - t0, "base_hwm_mib": base})


def task_infer(a):
    import infer

    emit(infer.measure(a))


def task_profile(a):
    import profile_convert

    emit(profile_convert.profile(a))


if __name__ == "__main__":
    globals()[f"task_{sys.argv[1]}"](json.loads(sys.argv[2]))
