"""Time-bounded fuzzing of bnconvert's Caffe readers and graph builder.

Usage (from the repository root):
    python fuzz/run.py --minutes 10            # the documented long run
    python fuzz/run.py --minutes 1 --jobs 2    # quicker, on two cores
    python fuzz/run.py --replay prototxt 12345 # re-run one input from its kind and seed

Six targets, each input generated from its own seed (so every failure can be replayed):
  prototxt   - mutated real prototxts from ../shared/zoo (numbers, types, blob names, lines, bytes,
               CRLF, odd fields) read through load_net;
  caffemodel - truncated / bit-flipped / spliced caffemodels from ../shared/caffe-ref loaded with
               their prototxt;
  layers     - random layer lists (random types, params and wiring) through upgrade + build_graph;
  text       - random prototxt-like token soup;
  structure  - real prototxts with their layer count and depth changed (chains of up to 3,000
               layers, thousands of in-place repeats, duplicated/deleted/shuffled spans, braces
               nested up to 20,000 deep; fuzz/structure.py);
  outputs    - upgrade / caffe2keras / keras2caffe run in-process with random output-path
               arguments, all inside a temporary directory (fuzz/outputs.py).
An input passes when it gives a result or a well-formed ConversionError (names the file, one
line, no wrapped Python exception). Any other exception, a hang (> --timeout s) or a crash of the
worker process is a failure; failing inputs are saved under --out. Prints the figures at the end.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fuzz"))

import outputs as O  # noqa: E402
import structure as S  # noqa: E402
import targets as T  # noqa: E402

KINDS = ["prototxt", "caffemodel", "layers", "text", "structure", "outputs"]


class Hang(Exception):
    pass


def make_input(kind, seed, corpus):
    """The input of ``kind`` for ``seed``: (bytes or NetParameter, prototxt path or None)."""
    zoo, pairs = corpus
    rng = random.Random(f"{kind}:{seed}")
    if kind == "prototxt":
        return T.mutate_text(Path(rng.choice(zoo)).read_bytes(), rng), None
    if kind == "caffemodel":
        proto, model = rng.choice(pairs)
        return T.mutate_binary(Path(model).read_bytes(), rng), proto
    if kind == "layers":
        return T.random_net(rng), None
    if kind == "structure":
        return S.mutate_structure(Path(rng.choice(zoo)).read_bytes(), rng), None
    if kind == "outputs":
        return rng, None  # the command and its paths are drawn when it runs (see outputs.make_command)
    return T.random_text(rng), None


def run_one(kind, seed, corpus, tmpdir):
    data, proto = make_input(kind, seed, corpus)
    if kind == "outputs":
        pairs = corpus[1]
        return O.check_outputs(data, data.choice(pairs), O.small_pair(pairs), tmpdir or tempfile.gettempdir())
    if kind in ("prototxt", "text", "structure"):
        return T.check_prototxt_bytes(data, tmpdir)
    if kind == "caffemodel":
        return T.check_caffemodel_bytes(proto, data, tmpdir)
    return T.check_net_param(data)


def save(out, kind, seed, corpus, reason):
    out.mkdir(parents=True, exist_ok=True)
    data, proto = make_input(kind, seed, corpus)
    stem = out / f"{kind}_{seed}"
    if kind == "layers":
        data = str(data).encode()
    elif kind == "outputs":
        data = f"outputs seed {seed}: replay it to see the command\n".encode()
    stem.with_suffix(".input").write_bytes(data)
    stem.with_suffix(".txt").write_text(f"{reason}\nprototxt: {proto}\nreplay: python fuzz/run.py --replay {kind} {seed}\n")


def worker(wid, seeds, deadline, corpus, out, timeout, state_path, stats_path):
    def on_alarm(signum, frame):
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    stats = {k: 0 for k in KINDS}
    failures = []
    tmpdir = out / f"tmp{wid}"
    tmpdir.mkdir(parents=True, exist_ok=True)
    if "outputs" in KINDS:
        O.prepare(corpus[1], str(tmpdir))  # Keras import and a small .keras model, before any alarm
    last_flush = 0.0
    for seed in seeds:
        if time.time() > deadline:
            break
        kind = KINDS[seed % len(KINDS)]
        state_path.write_text(json.dumps([kind, seed]))
        signal.alarm(timeout)
        try:
            reason = run_one(kind, seed, corpus, str(tmpdir))
        except Hang:
            reason = f"hang: over {timeout} s"
        finally:
            signal.alarm(0)
        stats[kind] += 1
        if reason:
            failures.append([kind, seed, reason])
            save(out, kind, seed, corpus, reason)
        if time.time() - last_flush > 1.0:
            stats_path.write_text(json.dumps({"stats": stats, "failures": failures, "next": seed + 1}))
            last_flush = time.time()
    stats_path.write_text(json.dumps({"stats": stats, "failures": failures, "done": True}))


def supervise(args, corpus):
    """Run workers until the deadline; a worker that dies is recorded as a crash and restarted."""
    out = Path(args.out)
    deadline = time.time() + args.minutes * 60
    totals = {k: 0 for k in KINDS}
    failures, crashes = [], []
    ctx = mp.get_context("fork")
    next_seed = [args.seed + j * 10 ** 9 for j in range(args.jobs)]
    procs = {}

    def start(j):
        state, stats = out / f"state{j}.json", out / f"stats{j}.json"
        stats.unlink(missing_ok=True)
        seeds = range(next_seed[j], next_seed[j] + 10 ** 9)
        p = ctx.Process(target=worker, args=(j, seeds, deadline, corpus, out, args.timeout, state, stats))
        p.start()
        procs[j] = (p, state, stats)

    def collect(j):
        _, _, stats = procs[j]
        if stats.exists():
            info = json.loads(stats.read_text())
            for k, v in info["stats"].items():
                totals[k] += v
            failures.extend(info["failures"])
            return info
        return {}

    out.mkdir(parents=True, exist_ok=True)
    for j in range(args.jobs):
        start(j)
    while procs:
        time.sleep(0.5)
        for j in list(procs):
            p, state, stats = procs[j]
            if p.is_alive():
                continue
            p.join()
            info = collect(j)
            del procs[j]
            if p.exitcode != 0:
                kind, seed = json.loads(state.read_text())
                crashes.append([kind, seed, f"worker died with exit code {p.exitcode}"])
                save(out, kind, seed, corpus, f"crash: exit code {p.exitcode}")
                totals[kind] += 1
                next_seed[j] = seed + 1
                if time.time() < deadline:
                    start(j)
    return totals, failures, crashes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it counts as a hang")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared data (zoo/, caffe-ref/)")
    ap.add_argument("--out", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "bnconvert-fuzz"),
                    help="where failing inputs are saved")
    ap.add_argument("--replay", nargs=2, metavar=("KIND", "SEED"), help="run one input and print its outcome")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    corpus = T.seed_files(args.shared)
    if not corpus[0] or not corpus[1]:
        print(f"no seed files under {args.shared} (need zoo/*/*.prototxt and caffe-ref/*/weights.caffemodel)")
        return 2
    if args.replay:
        kind, seed = args.replay[0], int(args.replay[1])
        print(run_one(kind, seed, corpus, None) or "ok: a result or a well-formed ConversionError")
        return 0
    t0 = time.time()
    totals, failures, crashes = supervise(args, corpus)
    n = sum(totals.values())
    print(f"fuzz run: {time.time() - t0:.0f} s, {args.jobs} job(s), seeds from {args.seed}")
    print(f"inputs tried: {n} (" + ", ".join(f"{k} {v}" for k, v in totals.items()) + ")")
    print(f"failures: {len(failures)} exceptions/hangs, {len(crashes)} crashes")
    seen = set()
    for kind, seed, reason in failures + crashes:
        key = reason[:60]
        if key not in seen:
            seen.add(key)
            print(f"  {kind} seed {seed}: {reason[:200]}")
    if failures or crashes:
        print(f"failing inputs saved under {args.out}")
    return 1 if failures or crashes else 0


if __name__ == "__main__":
    sys.exit(main())
