"""Shared helpers of the benchmarks: machine description, fresh-subprocess runs, tables, JSON."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ZOO = ROOT.parent / "shared" / "zoo"
CAFFE_REF = ROOT.parent / "shared" / "caffe-ref"
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
PY = sys.executable
MARK = "BENCH_RESULT "

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")


def machine():
    """nproc, CPU model, RAM and library versions, for every results file."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) // 1024
    except OSError:
        pass
    from importlib.metadata import version

    libs = {}
    for pkg in ("tensorflow", "keras", "numpy", "protobuf"):
        try:
            libs[pkg] = version(pkg)
        except Exception:
            libs[pkg] = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_mib": ram, "python": platform.python_version(),
            "gpu": _gpu(), **libs}


def _gpu():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def worker(task, args, timeout=900):
    """Run ``bench/worker.py task`` in a fresh interpreter.

    Returns the worker's JSON result plus ``process_s`` (wall time of the whole process, from
    the parent's clock, interpreter start and imports included).
    """
    cmd = [PY, str(BENCH / "worker.py"), task, json.dumps(args)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {task} {args} failed (rc {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    res = json.loads(lines[-1][len(MARK):])
    res["process_s"] = wall
    return res


def run_cli(argv, timeout=900):
    """Run ``python -m bnconvert ...``; returns (seconds, CompletedProcess)."""
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-m", "bnconvert", *argv], capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=timeout)
    return time.perf_counter() - t0, proc


def median(values):
    return statistics.median(values) if values else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def table(title, headers, rows):
    """Print a plain-text table (also valid Markdown)."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    sys.stdout.flush()


def _fmt(x):
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
    if x is True:
        return "yes"
    if x is False:
        return "NO"
    return "-" if x is None else str(x)


def save(name, payload):
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
               "loadavg_1_5_15": os.getloadavg(), **payload}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    os.replace(tmp, path)
    print(f"\n(wrote {path.relative_to(ROOT)})")
    return path


def warm_page_cache(path):
    """Read a file once so that no measured run pays for the disk."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def cached_caffemodel(name, prototxt, *, v1=False, seed=0):
    """A random caffemodel for ``prototxt`` in bench/.cache (written once, in a subprocess)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.caffemodel"
    if not path.exists():
        print(f"  (writing random weights {path.relative_to(ROOT)} ...)", flush=True)
        worker("make_caffemodel", {"prototxt": str(prototxt), "out": str(path), "v1": v1, "seed": seed})
    return path


def warm_page_cache(path):
    """Read a file once so that no measured run pays for the disk."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
