"""Room for Keras's recursive graph walks on deep models.

Keras builds (``keras.Model(inputs, outputs)``) and loads a functional model with a depth-first
walk that recurses once per layer of the longest path, so a chain of ~1,000 layers ends in a
RecursionError at Python's default limit. :func:`call_deep` runs such a call in a worker thread
with a large stack, under a recursion limit raised for as long as any deep call runs (the limit
is per interpreter, so it is raised under a lock, by the deepest need of the calls in progress,
and restored when the last one ends). Shallow calls run directly, unchanged.
No Keras import.
"""
from __future__ import annotations

import sys
import threading

FRAMES_PER_LAYER = 4  # measured: one frame per layer when building or loading; 4x to spare
MARGIN_FRAMES = 300  # Keras's own depth around the recursive walk
STACK_BYTES = 512 << 20  # the worker thread's stack (virtual memory; only what is used is touched)
MAX_LIMIT = 2_000_000

_lock = threading.Lock()
_active = {}  # id of a running deep call -> the limit it needs
_saved_limit = None


def frames_needed(depth):
    """Frames a graph walk ``depth`` layers deep may take, on top of the caller's."""
    return MARGIN_FRAMES + FRAMES_PER_LAYER * max(int(depth), 0)


def _frames_in_use():
    n, f = 0, sys._getframe()
    while f is not None:
        n, f = n + 1, f.f_back
    return n


def call_deep(depth, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with room for a graph ``depth`` layers deep (an upper bound,
    e.g. the layer count). Returns its result or raises its exception."""
    need = min(frames_needed(depth), MAX_LIMIT)
    if _frames_in_use() + need <= sys.getrecursionlimit() and not _active:
        return fn(*args, **kwargs)
    result, error = [], []

    def target():
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread
            error.append(e)

    key = object()
    with _lock:
        _raise_limit(key, need)
        old_stack = threading.stack_size()
        threading.stack_size(STACK_BYTES)
        try:
            worker = threading.Thread(target=target, name="bnconvert-deep", daemon=True)
            worker.start()
        except BaseException:
            _restore_limit(key)
            raise
        finally:
            threading.stack_size(old_stack)
    try:
        worker.join()
    finally:
        with _lock:
            _restore_limit(key)
    if error:
        raise error[0].with_traceback(error[0].__traceback__)
    return result[0]


def _raise_limit(key, need):
    global _saved_limit
    if not _active:
        _saved_limit = sys.getrecursionlimit()
    _active[id(key)] = need
    sys.setrecursionlimit(max(_saved_limit, *_active.values()))


def _restore_limit(key):
    _active.pop(id(key), None)
    sys.setrecursionlimit(max(_saved_limit, *_active.values()) if _active else _saved_limit)
