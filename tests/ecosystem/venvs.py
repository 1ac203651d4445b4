"""Second virtual environments for the ecosystem tests, cached between runs.

Each environment is made once per (pyproject.toml, requirements, checkout, Python) and kept under
``$BNCONVERT_TEST_VENVS`` (default ``~/.cache/bnconvert-test-venvs``), so only a machine's first
run pays for the downloads. A failed install fails the test that needed it, with pip's output:
a ResolutionImpossible here is a packaging bug.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT

CACHE = Path(os.environ.get("BNCONVERT_TEST_VENVS", Path.home() / ".cache" / "bnconvert-test-venvs"))

# The oldest versions pyproject.toml allows, installed together with the checkout.
OLDEST = ["tensorflow==2.20.0", "keras==3.10.0", "numpy==1.26.4", "h5py==3.11.0", "protobuf==7.35.1"]
SPECS = {
    # keras + JAX from bnconvert's own [jax] extra: TensorFlow must not come along.
    "jax": ["-e", f"{ROOT}[jax]", "pytest>=8"],
    # keras + PyTorch (README: `pip install bnconvert torch`), again without TensorFlow. Pinned: where
    # pip's find-links offers the CPU wheel 2.13.0+cpu, == 2.13.0 takes it (the highest match), not a CUDA build.
    "torch": ["-e", str(ROOT), "torch==2.13.0", "pytest>=8"],
    "oldest-tf": ["-e", str(ROOT), *OLDEST, "pytest>=8"],
    # the sdist test installs the unpacked sdist's [test] extra into this one each run
    "sdist": ["build", "pytest>=8"],
}


def _key(name):
    h = hashlib.sha256()
    for part in ((ROOT / "pyproject.toml").read_bytes(), repr(SPECS[name]).encode(), str(ROOT).encode(),
                 sys.version.encode()):
        h.update(part)
    return h.hexdigest()[:12]


def _pip(py, args, log):
    r = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
                       capture_output=True, text=True, timeout=1800)
    log.append(f"$ pip install {' '.join(args)}\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    if r.returncode:
        pytest.fail("pip could not install the environment:\n" + "\n".join(log)[-6000:])


def venv(name):
    """The cached virtual environment ``name`` (see SPECS); returns its directory."""
    path = CACHE / f"{name}-{_key(name)}"
    if (path / ".complete").exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building the same one
        if (path / ".complete").exists():
            return path
        for old in CACHE.glob(f"{name}-*"):  # environments of earlier pyproject versions
            shutil.rmtree(old, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
        log = []
        _pip(path / "bin" / "python", ["--upgrade", "pip"], log)
        _pip(path / "bin" / "python", SPECS[name], log)
        (path / ".complete").write_text(f"built in {time.perf_counter() - t0:.0f} s\n")
    return path


def clean_env(**extra):
    """os.environ without Keras/TF settings that would leak from the outer test process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KERAS_BACKEND", "PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PYTEST")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["KERAS_HOME"] = extra.pop("KERAS_HOME", env.get("KERAS_HOME", str(CACHE / "keras-home")))
    env.update(extra)
    return env


def run(path, args, timeout=900, cwd=None, **env):
    """Run ``args[0]`` from the environment's bin/ with the rest of ``args`` (in ``cwd``, default the
    checkout); returns the CompletedProcess."""
    exe = path / "bin" / args[0]
    return subprocess.run([str(exe), *args[1:]], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(**env), cwd=str(cwd or ROOT))
