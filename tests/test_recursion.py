"""bnconvert.recursion: deep nets convert, save and load (issue 14: a chain of 1,000+ layers
ended in RecursionError inside Keras's recursive graph walk)."""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from bnconvert.recursion import call_deep, frames_needed


def _depth(n):
    return 0 if n == 0 else 1 + _depth(n - 1)


def test_call_deep_gives_room_and_restores_the_limit():
    before = sys.getrecursionlimit()
    with pytest.raises(RecursionError):
        _depth(before + 100)
    assert call_deep(before + 100, _depth, before + 100) == before + 100
    assert sys.getrecursionlimit() == before


def test_call_deep_passes_exceptions_and_runs_shallow_calls_in_place():
    with pytest.raises(KeyError, match="x"):
        call_deep(10 ** 4, lambda: {}["x"])
    assert call_deep(10, threading.current_thread) is threading.current_thread()
    assert frames_needed(3000) > 3000


def test_concurrent_deep_calls_keep_the_highest_limit():
    before = sys.getrecursionlimit()
    results, barrier = [], threading.Barrier(2)

    def job(n):
        barrier.wait()
        results.append(call_deep(n, _depth, n))

    threads = [threading.Thread(target=job, args=(n,)) for n in (3000, 6000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [3000, 6000] and sys.getrecursionlimit() == before


def test_3000_layer_chain_converts_saves_and_loads(tmp_path):
    """Caffe -> Keras for a 3,000-layer chain built here; then the .keras round trip."""
    from bnconvert.c2k import convert_net
    from bnconvert.caffe.graph import build_graph
    from bnconvert.caffe.io import pb2
    from bnconvert.k2c import load_keras_model

    n = 3000
    net = pb2().NetParameter(name="chain")
    inp = net.layer.add(name="data", type="Input")
    inp.top.append("data")
    inp.input_param.shape.add().dim.extend([1, 2, 3, 3])
    prev = "data"
    for i in range(n):  # not in place: every layer is one more level of the Keras graph
        lp = net.layer.add(name=f"t{i}", type="TanH" if i % 2 else "ReLU")
        lp.bottom.append(prev)
        lp.top.append(f"t{i}")
        prev = lp.top[0]
    model, report, _ = convert_net(build_graph(net, path="chain.prototxt"))
    assert report["caffe_layers"] == n and len(model.layers) == n + 1
    model.save(tmp_path / "chain.keras")
    loaded = load_keras_model(tmp_path / "chain.keras")
    x = np.random.default_rng(0).normal(size=(1, 3, 3, 2)).astype(np.float32)
    expected = np.tanh(np.maximum(x, 0))  # relu, then tanh/relu alternating: tanh(relu(x)) is a fixed point
    for _ in range(n // 2 - 1):
        expected = np.tanh(np.maximum(expected, 0))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
