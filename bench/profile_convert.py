"""cProfile of one ResNet-50 conversion (load_net + convert_net + save), top hotspots.

Run through ``bench/worker.py profile``; ``print_tables`` formats the result. Keras and the
converter modules are imported before profiling starts, so imports do not count.
"""
from __future__ import annotations

import cProfile
import pstats
import time


def _rows(stats, key, top):
    stats.sort_stats(key)
    rows = []
    for func in stats.fcn_list[:top]:
        cc, nc, tt, ct, _ = stats.stats[func]
        path, line, name = func
        short = path.split("site-packages/")[-1] if "site-packages/" in path else path.split("/main/")[-1]
        rows.append({"function": f"{short}:{line}({name})", "calls": nc, "tottime_s": tt, "cumtime_s": ct})
    return rows


def profile(a):
    import keras  # noqa: F401

    from bnconvert.c2k import convert_net
    from bnconvert.caffe.graph import load_net

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    model = convert_net(load_net(a["prototxt"], a["caffemodel"]), progress=False)[0]
    model.save(a["out"])
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    top = a.get("top", 12)
    own = [r for r in _rows(stats, "cumulative", 400) if "bnconvert/" in r["function"]][:top]
    return {"wall_s": wall, "by_tottime": _rows(stats, "tottime", top), "bnconvert_by_cumtime": own}


def print_tables(results):
    import common as C

    for variant, r in results.items():
        rows = [[x["function"][-70:], x["calls"], x["tottime_s"], x["cumtime_s"]] for x in r["by_tottime"]]
        C.table(f"profile, ResNet-50 conversion [{variant}], {r['wall_s']:.2f} s under cProfile: top self time",
                ["function", "calls", "self s", "cum s"], rows)
        rows = [[x["function"][-70:], x["calls"], x["tottime_s"], x["cumtime_s"]] for x in r["bnconvert_by_cumtime"]]
        C.table(f"profile [{variant}]: bnconvert functions by cumulative time",
                ["function", "calls", "self s", "cum s"],
                rows)
