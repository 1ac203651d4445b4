"""MobileNet-SSD (chuanqi305, 300x300, random weights): conversion time and peak memory, and inference
time of the converted model with DetectionOutput inside it, against OpenCV dnn on the same caffemodel.

``bench/run.py --only ssd`` runs it; each measurement is a fresh interpreter running
``python bench/ssd.py TASK JSON`` (the protocol of bench/worker.py: a ``BENCH_RESULT {json}`` last line).

  convert   load_net + convert_net (PriorBox boxes computed here, once) + model.save
  floor     protobuf-parse the caffemodel + keras.applications.MobileNet backbone (300x300) + save
  infer     batch-1 latency in a tf.function of the converted whole net, of its heads only
            (mbox_loc, mbox_conf_flatten, mbox_priorbox), of its DetectionOutput layer alone on those
            heads, and of OpenCV dnn's forward of the whole net; the runs interleaved
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MARK = "BENCH_RESULT "
PROTO = Path(__file__).resolve().parents[1] / "tests" / "nets" / "forks" / "MobileNetSSD_deploy.prototxt"
HEADS = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]


def _emit(res):
    from worker import hwm_mib

    res["hwm_mib"] = hwm_mib()
    print(MARK + json.dumps(res), flush=True)


def task_convert(a):
    import keras  # noqa: F401

    from bnconvert.c2k import convert_net
    from bnconvert.caffe.graph import load_net
    from worker import hwm_mib

    base = hwm_mib()
    t0 = time.perf_counter()
    net = load_net(a["prototxt"], a["caffemodel"])
    t1 = time.perf_counter()
    model, _, _ = convert_net(net, progress=False)
    t2 = time.perf_counter()
    model.save(a["out"])
    t3 = time.perf_counter()
    priors = [la for la in model.layers if type(la).__name__ == "CaffePriorBox"]
    _emit({"work_s": t3 - t0, "load_s": t1 - t0, "convert_s": t2 - t1, "save_s": t3 - t2, "base_hwm_mib": base,
           "priorbox_layers": len(priors), "prior_values": int(sum(la._priors.size for la in priors))})


def task_floor(a):
    import keras

    from bnconvert.caffe.io import read_caffemodel
    from worker import hwm_mib

    base = hwm_mib()
    t0 = time.perf_counter()
    parsed = read_caffemodel(a["caffemodel"])
    t1 = time.perf_counter()
    model = keras.applications.MobileNet(input_shape=(300, 300, 3), include_top=False, weights=None)
    t2 = time.perf_counter()
    model.save(a["out"])
    t3 = time.perf_counter()
    del parsed
    _emit({"work_s": t3 - t0, "load_s": t1 - t0, "convert_s": t2 - t1, "save_s": t3 - t2, "base_hwm_mib": base})


def _latencies(fns, runs):
    """Median ms of each function, the runs interleaved so that every one sees the same machine load."""
    for fn in fns.values():  # trace / warm up
        fn()
        fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def task_infer(a):
    import cv2
    import keras
    import numpy as np
    import tensorflow as tf

    from bnconvert.c2k import convert_caffe

    model, _ = convert_caffe(a["prototxt"], a["caffemodel"], outputs=HEADS + ["detection_out"])
    heads = keras.Model(model.inputs, model.outputs[:3])
    full = keras.Model(model.inputs, model.outputs[3])
    detect = next(la for la in model.layers if type(la).__name__ == "CaffeDetectionOutput")
    x = np.random.default_rng(0).normal(0, 1, (1, 300, 300, 3)).astype(np.float32)
    run_full = tf.function(lambda t: full(t, training=False))
    run_heads = tf.function(lambda t: heads(t, training=False))
    head_values = [tf.constant(o) for o in run_heads(x)]
    run_detect = tf.function(lambda: detect(head_values))
    cv = cv2.dnn.readNetFromCaffe(a["prototxt"], a["caffemodel"])
    blob = np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def opencv():
        cv.setInput(blob, "data")
        return cv.forward("detection_out")

    ms = _latencies({"full_ms": lambda: run_full(x).numpy(), "heads_ms": lambda: [o.numpy() for o in run_heads(x)],
                     "detection_output_ms": lambda: run_detect().numpy(), "opencv_full_ms": opencv}, a["runs"])
    res = {"runs": a["runs"], **ms, "detections": int((run_full(x).numpy()[0, :, 0] >= 0).sum())}
    _emit(res)


def _worker(task, args, timeout=900):
    import subprocess

    import common as C

    cmd = [C.PY, str(Path(__file__).resolve()), task, json.dumps(args)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=C.ENV, cwd=C.ROOT, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"ssd benchmark {task} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    res = json.loads(lines[-1][len(MARK):])
    res["process_s"] = time.perf_counter() - t0
    return res


def bench_ssd(opts):
    import common as C

    cm = C.cached_caffemodel("mobilenet_ssd", PROTO)
    C.warm_page_cache(cm)
    repeats = 1 if opts.quick else 3
    out = Path(tempfile.mkdtemp(prefix="bnconvert-bench-"))
    runs = {"floor": [], "bnconvert": []}
    try:
        for _ in range(repeats):
            runs["floor"].append(_worker("floor", {"caffemodel": str(cm), "out": str(out / "floor.keras")}))
            runs["bnconvert"].append(_worker("convert", {"prototxt": str(PROTO), "caffemodel": str(cm),
                                                         "out": str(out / "ssd.keras")}))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    keys = ("work_s", "load_s", "convert_s", "save_s", "hwm_mib", "base_hwm_mib", "process_s")
    conv = {m: {k: C.median([r[k] for r in rs]) for k in keys} for m, rs in runs.items()}
    conv["bnconvert"]["wall_ratio"] = C.ratio(conv["bnconvert"]["work_s"], conv["floor"]["work_s"])
    conv["bnconvert"]["rss_ratio"] = C.ratio(conv["bnconvert"]["hwm_mib"], conv["floor"]["hwm_mib"])
    conv["bnconvert"]["priorbox_layers"] = runs["bnconvert"][0]["priorbox_layers"]
    inf = _worker("infer", {"prototxt": str(PROTO), "caffemodel": str(cm), "runs": 5 if opts.quick else 20})
    C.table(f"MobileNet-SSD conversion (median of {repeats}; floor = parse + keras.applications.MobileNet "
            "backbone + save)", ["run", "work s", "load s", "convert s", "save s", "peak MiB", "wall x", "RSS x"],
            [[m, r["work_s"], r["load_s"], r["convert_s"], r["save_s"], r["hwm_mib"], r.get("wall_ratio"),
              r.get("rss_ratio")] for m, r in conv.items()])
    C.table(f"MobileNet-SSD inference, batch 1 (median of {inf['runs']} ms; tf.function on CPU)",
            ["whole net", "heads only", "DetectionOutput", "OpenCV dnn whole net", "detections"],
            [[inf["full_ms"], inf["heads_ms"], inf["detection_output_ms"], inf["opencv_full_ms"], inf["detections"]]])
    return C.save("ssd", {"repeats": repeats, "conversion": conv, "conversion_runs": runs, "inference": inf})


if __name__ == "__main__":
    globals()[f"task_{sys.argv[1]}"](json.loads(sys.argv[2]))
