"""Graph building time vs layer count, up to 10^5 layers (issue 14: it was quadratic in the number
of in-place layers, from counting the versions of a blob by scanning every name).

Three nets per size, built in memory (no file I/O, no Keras): an in-place chain (every layer
``ReLU data -> data``: the case that was quadratic), a plain chain (``t{i-1} -> t{i}``) and a
residual net (Convolution + BatchNorm + Scale + ReLU in place, an Eltwise every 2 blocks).
``build_graph`` (upgrade, phase rules, versioning, shape inference) is timed against a floor
measured in the same run: one pass over the same NetParameter reading every layer's name,
type, bottoms and tops into a dict. Linear building keeps both the per-layer time and the
ratio to the floor flat as the size grows 10x; quadratic building multiplies them by ~10.
"""
from __future__ import annotations

import time

import common as C

SIZES = (1_000, 10_000, 30_000, 100_000)
QUICK_SIZES = (1_000, 10_000, 100_000)


def _input(net, dims):
    lp = net.layer.add(name="data", type="Input")
    lp.top.append("data")
    lp.input_param.shape.add().dim.extend(dims)


def in_place_chain(n):
    from bnconvert.caffe.io import pb2

    net = pb2().NetParameter(name="in_place")
    _input(net, [1, 2, 3, 3])
    for i in range(n):
        lp = net.layer.add(name=f"r{i}", type="ReLU")
        lp.bottom.append("data")
        lp.top.append("data")
    return net


def plain_chain(n):
    from bnconvert.caffe.io import pb2

    net = pb2().NetParameter(name="chain")
    _input(net, [1, 2, 3, 3])
    prev = "data"
    for i in range(n):
        lp = net.layer.add(name=f"t{i}", type="ReLU")
        lp.bottom.append(prev)
        lp.top.append(f"t{i}")
        prev = f"t{i}"
    return net


def residual(n):
    """About ``n`` layers: blocks of Convolution, BatchNorm, Scale, ReLU (in place), and an
    Eltwise sum with the block input every second block."""
    from bnconvert.caffe.io import pb2

    net = pb2().NetParameter(name="residual")
    _input(net, [1, 4, 4, 4])
    x, skip, i = "data", "data", 0
    while len(net.layer) < n:
        c = net.layer.add(name=f"conv{i}", type="Convolution", bottom=[x], top=[f"conv{i}"])
        c.convolution_param.num_output, c.convolution_param.pad[:] = 4, [1]
        c.convolution_param.kernel_size.append(3)
        for t in ("BatchNorm", "Scale", "ReLU"):
            net.layer.add(name=f"{t.lower()}{i}", type=t, bottom=[f"conv{i}"], top=[f"conv{i}"])
        x = f"conv{i}"
        if i % 2:
            net.layer.add(name=f"sum{i}", type="Eltwise", bottom=[x, skip], top=[f"sum{i}"])
            x = skip = f"sum{i}"
        i += 1
    return net


NETS = {"in-place chain": in_place_chain, "plain chain": plain_chain, "residual": residual}


def _floor(net):
    seen = {}
    for lp in net.layer:
        seen[lp.name] = (lp.type, list(lp.bottom), list(lp.top))
    return seen


def _time(fn, repeats):
    best = None
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    return best


def bench_graph(opts):
    from bnconvert.caffe.graph import build_graph

    sizes = QUICK_SIZES if getattr(opts, "quick", False) else SIZES
    rows, results = [], {}
    for kind, make in NETS.items():
        per = []
        for n in sizes:
            net = make(n)
            layers = len(net.layer)
            repeats = 3 if n <= 10_000 else 1
            build = _time(lambda: build_graph(net, path=f"{kind}.prototxt"), repeats)
            floor = _time(lambda: _floor(net), repeats)
            us = 1e6 * build / layers
            per.append({"layers": layers, "build_s": round(build, 4), "floor_s": round(floor, 4),
                        "us_per_layer": round(us, 2), "ratio_to_floor": C.ratio(build, floor)})
            rows.append([kind, layers, build, us, floor, C.ratio(build, floor)])
        growth = round(per[-1]["us_per_layer"] / per[0]["us_per_layer"], 2)
        results[kind] = {"sizes": per, "us_per_layer_growth": growth, "linear": growth <= 2.0}
    C.table("caffe graph building (build_graph: upgrade checks, phase rules, in-place versions, shape inference) "
            "vs layer count; floor = one pass reading every layer; linear = flat us/layer",
            ["net", "layers", "build s", "us/layer", "floor s", "x floor"], rows)
    for kind, r in results.items():
        print(f"  {kind}: us/layer grows {r['us_per_layer_growth']}x from {sizes[0]:,} to {sizes[-1]:,} layers "
              f"({'linear' if r['linear'] else 'NOT linear'}; quadratic would be ~{sizes[-1] // sizes[0]}x)")
    return C.save("graph", {"sizes": list(sizes), "nets": results,
                            "meets_target": all(r["linear"] for r in results.values())})
