"""Run every bnconvert benchmark: ``python bench/run.py [--quick] [--only NAME ...]``.

Each benchmark prints a table and writes ``bench/results/NAME.json``. Every figure is a ratio
against a floor measured in the same run on the same machine (see docs/performance.md):

  startup     `bnconvert --help` / `bnconvert inspect` (no TensorFlow import) vs a bare interpreter
  conversion  caffe2keras of full-size ResNet-50, ResNet-152, VGG19 (V1) vs protobuf parse +
              keras.applications build + save: wall time and peak RSS
  inference   converted ResNet-50 (and --fold-bn) vs keras.applications.ResNet50, batch 1 / 16
  keras2caffe keras.applications ResNet50 / VGG16 vs model.save_weights
  batch       `bnconvert caffe2keras DIR --jobs 2` vs --jobs 1 on 8 small models
  profile     cProfile of the ResNet-50 conversion, top hotspots
  ssd         MobileNet-SSD: conversion time/RSS, inference with DetectionOutput inside (bench/ssd.py)
  graph       caffe graph building time vs layer count up to 10^5 layers, vs one pass over the layers (bench/graph.py)

Random weights are written once into bench/.cache/ (git-ignored). --quick: ResNet-50 only, one
repeat, fewer inference iterations (about 3-4 minutes instead of about 13 on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as C  # noqa: E402
import graph as GRAPH  # noqa: E402
import ssd as SSD  # noqa: E402

CONVERSION_MODELS = [  # name, prototxt, keras.applications equivalent, V1 caffemodel
    ("resnet50", C.ZOO / "resnet50" / "ResNet-50-deploy.prototxt", "ResNet50", False),
    ("resnet152", C.ZOO / "resnet152" / "ResNet-152-deploy.prototxt", "ResNet152", False),
    ("vgg19", C.ZOO / "vgg19_v1" / "VGG_ILSVRC_19_layers_deploy.prototxt", "VGG19", True),
]
VARIANTS = [("bnconvert", [])]


def bench_startup(opts):
    n = 3 if opts.quick else 5
    proto = str(CONVERSION_MODELS[0][1])
    cases = [("python -c pass (floor)", [C.PY, "-c", "pass"]),
             ("bnconvert --help", [C.PY, "-m", "bnconvert", "--help"]),
             ("bnconvert inspect resnet50", [C.PY, "-m", "bnconvert", "inspect", proto])]
    rows, res = [], {}
    for label, cmd in cases:
        times = [_timed(cmd) for _ in range(n)]
        res[label] = {"median_s": C.median(times), "runs_s": times}
    tf_loaded = {k: _tf_loaded(argv) for k, argv in [("bnconvert --help", ["--help"]),
                                                     ("bnconvert inspect resnet50", ["inspect", proto])]}
    floor = res["python -c pass (floor)"]["median_s"]
    for label, r in res.items():
        r["ratio"] = C.ratio(r["median_s"], floor)
        r["tensorflow_imported"] = tf_loaded.get(label)
        ok = None if label.endswith("(floor)") else (r["median_s"] <= 1.0 and tf_loaded.get(label) is False)
        r["meets_target"] = ok
        rows.append([label, r["median_s"], r["ratio"], tf_loaded.get(label), "<= 1 s, no TF", ok])
    C.table("startup (median of %d)" % n, ["command", "s", "x floor", "TF imported", "target", "met"], rows)
    return C.save("startup", {"runs": n, "results": res})


def _timed(cmd):
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=C.ENV, cwd=C.ROOT)
    if proc.returncode not in (0,):
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def _tf_loaded(argv):
    import subprocess

    code = ("import sys\nfrom bnconvert.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "sys.stdout.flush()\nprint('TF_LOADED', 'tensorflow' in sys.modules, 'keras' in sys.modules)" % argv)
    out = subprocess.run([C.PY, "-c", code], capture_output=True, text=True, env=C.ENV, cwd=C.ROOT).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("TF_LOADED")][-1].split()
    return line[1] == "True" or line[2] == "True"


def bench_conversion(opts):
    models = CONVERSION_MODELS[:1] if opts.quick else CONVERSION_MODELS
    repeats = 1 if opts.quick else 3
    out = Path(tempfile.mkdtemp(prefix="bnconvert-bench-"))
    results = {}
    try:
        for name, proto, app, v1 in models:
            cm = C.cached_caffemodel(name + ("_v1" if v1 else ""), proto, v1=v1)
            C.warm_page_cache(cm)
            runs = {"floor": []} | {v: [] for v, _ in VARIANTS}
            for _ in range(repeats):  # interleaved, so drift hits floor and converter alike
                runs["floor"].append(C.worker("floor_convert", {"caffemodel": str(cm), "app": app,
                                                                "out": str(out / "floor.keras")}))
                for v, patches in VARIANTS:
                    runs[v].append(C.worker("convert", {"prototxt": str(proto), "caffemodel": str(cm),
                                                        "out": str(out / f"{name}.keras"), "patches": patches}))
            results[name] = _summarize_conversion(runs, cm)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    _print_conversion(results, repeats)
    return C.save("conversion", {"repeats": repeats, "targets": {"wall": 1.2, "peak_rss": 1.3},
                                 "results": results})


def _summarize_conversion(runs, cm):
    summary = {"caffemodel_mib": cm.stat().st_size / 2 ** 20}
    for v, rs in runs.items():
        summary[v] = {k: C.median([r[k] for r in rs]) for k in ("work_s", "process_s", "load_s", "convert_s",
                                                               "save_s", "hwm_mib", "base_hwm_mib")}
        summary[v]["runs"] = rs
    f = summary["floor"]
    for v, _ in VARIANTS:
        s = summary[v]
        s["wall_ratio"] = C.ratio(s["work_s"], f["work_s"])
        s["process_ratio"] = C.ratio(s["process_s"], f["process_s"])
        s["rss_ratio"] = C.ratio(s["hwm_mib"], f["hwm_mib"])
        s["meets_wall"] = s["wall_ratio"] <= 1.2
        s["meets_rss"] = s["rss_ratio"] <= 1.3
    return summary


def _print_conversion(results, repeats):
    rows = []
    for name, s in results.items():
        f = s["floor"]
        rows.append([name, s["caffemodel_mib"], "floor", f["work_s"], f["process_s"], None, None,
                     f["hwm_mib"], None, None])
        for v, _ in VARIANTS:
            r = s[v]
            rows.append([name, s["caffemodel_mib"], v, r["work_s"], r["process_s"], r["wall_ratio"],
                         r["meets_wall"], r["hwm_mib"], r["rss_ratio"], r["meets_rss"]])
    C.table(f"conversion (median of {repeats}; work = after `import keras`; targets wall <= 1.2x, RSS <= 1.3x)",
            ["model", "MiB", "run", "work s", "process s", "wall x", "<=1.2", "peak MiB", "RSS x", "<=1.3"], rows)
    rows = []
    for name, s in results.items():
        for v in ["floor"] + [v for v, _ in VARIANTS]:
            r = s[v]
            rows.append([name, v, r["load_s"], r["convert_s"], r["save_s"]])
    C.table("conversion phases (s; floor: parse / build / save)", ["model", "run", "load", "convert", "save"], rows)


def bench_inference(opts):
    proto = CONVERSION_MODELS[0][1]
    cm = C.cached_caffemodel("resnet50", proto)
    args = {"prototxt": str(proto), "caffemodel": str(cm), "batches": [1, 16],
            "rounds": 3 if opts.quick else 7, "seconds": 0.6 if opts.quick else 1.5,
            "xla": not opts.quick}
    res = C.worker("infer", args, timeout=1800)
    import infer

    infer.print_tables(res)
    return C.save("inference", {"args": args, "results": res})


def bench_keras2caffe(opts):
    try:
        import importlib

        importlib.import_module("bnconvert.k2c").keras_to_caffe  # noqa: B018
    except (ImportError, AttributeError) as e:
        print(f"\nkeras2caffe: bnconvert.k2c.keras_to_caffe is not available ({e}); not measured")
        return C.save("keras2caffe", {"skipped": str(e)})
    apps = ["ResNet50"] if opts.quick else ["ResNet50", "VGG16"]
    repeats = 1 if opts.quick else 3
    results, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="bnconvert-bench-") as out:
        for app in apps:
            runs = {"floor": [], "keras2caffe": []}
            for _ in range(repeats):
                for mode in runs:
                    runs[mode].append(C.worker("k2c", {"app": app, "mode": mode, "outdir": out}))
            s = {m: {k: C.median([r[k] for r in rs]) for k in ("work_s", "process_s", "hwm_mib", "base_hwm_mib")}
                 for m, rs in runs.items()}
            k, f = s["keras2caffe"], s["floor"]
            k["wall_ratio"], k["rss_ratio"] = C.ratio(k["work_s"], f["work_s"]), C.ratio(k["hwm_mib"], f["hwm_mib"])
            k["meets_target"] = k["wall_ratio"] <= 1.5 and k["rss_ratio"] <= 1.5
            s["runs"] = runs
            results[app] = s
            rows.append([app, f["work_s"], k["work_s"], k["wall_ratio"], f["hwm_mib"], k["hwm_mib"], k["rss_ratio"],
                         k["meets_target"]])
    C.table(f"keras2caffe (median of {repeats}; floor = model.save_weights; target <= 1.5x)",
            ["model", "floor s", "k2c s", "wall x", "floor MiB", "k2c MiB", "RSS x", "met"], rows)
    return C.save("keras2caffe", {"repeats": repeats, "target": 1.5, "results": results})


BATCH_MODELS = [  # small nets: (name, prototxt); resnet50_slim brings its real Caffe weights
    ("lenet", C.ZOO / "bvlc_lenet" / "lenet.prototxt"),
    ("cifar10_quick", C.ZOO / "bvlc_cifar10_quick" / "cifar10_quick.prototxt"),
    ("cifar10_full", C.ZOO / "bvlc_cifar10_full" / "cifar10_full.prototxt"),
    ("squeezenet_v1.0", C.ZOO / "squeezenet_v1.0" / "deploy.prototxt"),
    ("squeezenet_v1.1", C.ZOO / "squeezenet_v1.1" / "deploy.prototxt"),
    ("mobilenet_v1", C.ZOO / "mobilenet_v1" / "mobilenet_deploy.prototxt"),
    ("googlenet", C.ZOO / "bvlc_googlenet" / "deploy.prototxt"),
    ("resnet50_slim", C.CAFFE_REF / "resnet50_slim" / "deploy.prototxt"),
]


def _batch_dir():
    """bench/.cache/batch/NAME.prototxt + NAME.caffemodel for every batch model."""
    d = C.CACHE / "batch"
    d.mkdir(parents=True, exist_ok=True)
    for name, src in BATCH_MODELS:
        proto = d / f"{name}.prototxt"
        if not proto.exists():
            shutil.copy(src, proto)
        real = src.parent / "weights.caffemodel"
        if real.exists() and not (d / f"{name}.caffemodel").exists():
            shutil.copy(real, d / f"{name}.caffemodel")
        C.cached_caffemodel(f"batch/{name}", proto)
    return d


def bench_batch(opts):
    cli = C.ROOT / "bnconvert" / "commands" / "caffe_to_keras.py"
    if not cli.exists():
        print("\nbatch: bnconvert/commands/caffe_to_keras.py does not exist yet; not measured")
        return C.save("batch", {"skipped": "no caffe2keras command"})
    d = _batch_dir()
    repeats = 1 if opts.quick else 2
    runs = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bnconvert-bench-") as out:
        for _ in range(repeats):
            for jobs in runs:
                secs, proc = C.run_cli(["caffe2keras", str(d), "-o", out, "--jobs", str(jobs), "-q"])
                if proc.returncode != 0:
                    raise RuntimeError(f"caffe2keras --jobs {jobs} failed:\n{proc.stderr[-3000:]}")
                runs[jobs].append(secs)
    t1, t2 = C.median(runs[1]), C.median(runs[2])
    speedup = C.ratio(t1, t2)
    res = {"models": [n for n, _ in BATCH_MODELS], "runs_s": runs, "jobs1_s": t1, "jobs2_s": t2, "speedup": speedup,
           "parallel_efficiency": round(speedup / 2, 3), "meets_target": speedup >= 1.7}
    C.table(f"batch caffe2keras, {len(BATCH_MODELS)} small models (median of {repeats}; floor = --jobs 1; "
            "target speedup >= 1.7 on 2 cores)", ["--jobs 1 s", "--jobs 2 s", "speedup", "efficiency", "met"],
            [[t1, t2, speedup, res["parallel_efficiency"], res["meets_target"]]])
    return C.save("batch", res)


def bench_profile(opts):
    proto = CONVERSION_MODELS[0][1]
    cm = C.cached_caffemodel("resnet50", proto)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bnconvert-bench-") as out:
        for v, patches in VARIANTS:
            results[v] = C.worker("profile", {"prototxt": str(proto), "caffemodel": str(cm),
                                              "out": str(Path(out) / "m.keras"), "patches": patches, "top": 12})
    import profile_convert

    profile_convert.print_tables(results)
    return C.save("profile", {"results": results})


BENCHMARKS = {"startup": bench_startup, "conversion": bench_conversion, "inference": bench_inference,
              "keras2caffe": bench_keras2caffe, "batch": bench_batch, "profile": bench_profile,
              "ssd": SSD.bench_ssd, "graph": GRAPH.bench_graph}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="ResNet-50 only, one repeat (about 3-4 minutes)")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    opts = ap.parse_args(argv)
    m = C.machine()
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram_mib']} MiB RAM, GPU: {m['gpu'] or 'none'}; "
          f"tensorflow {m['tensorflow']}, keras {m['keras']}, python {m['python']}")
    t0 = time.perf_counter()
    for name in opts.only or BENCHMARKS:
        t = time.perf_counter()
        BENCHMARKS[name](opts)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"({name}: {time.perf_counter() - t:.0f} s; load average {load} on {os.cpu_count()} CPUs: "
              f"other processes on the machine make the figures noisier)")
    print(f"\nall benchmarks: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
