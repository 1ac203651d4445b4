"""The sdist: it holds what the tests need, installs with its [test] extra, and the suite runs from it.

Building the sdist and installing it take seconds once the cached venv has the dependencies.
"""
import re
import tarfile

import pytest

from helpers import ROOT

from . import venvs

# A subset of the suite, run from the unpacked sdist: docs, imports, the samples, keras2caffe in OpenCV.
SUBSET = ["tests/test_docs.py", "tests/test_package.py", "tests/test_samples.py", "tests/test_backend.py",
          "tests/k2c/test_activation.py"]
MUST_HOLD = ["LICENSE", "README.md", "pyproject.toml", "proto/caffe.proto", "tests/conftest.py", "tests/helpers.py",
             "tests/nets", "tests/k2c/conftest.py", "sample_models/mini_resnet/weights.caffemodel",
             "bnconvert/caffe_pb2.py", "bnconvert/caffe_pb2.sha256", ".ci/run"]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    env = venvs.venv("sdist")
    out = tmp_path_factory.mktemp("sdist")
    r = venvs.run(env, ["python", "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)], timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (tar,) = out.glob("bnconvert-*.tar.gz")
    with tarfile.open(tar) as t:
        names = t.getnames()
        t.extractall(out, filter="data")
    return env, out / tar.name[:-len(".tar.gz")], names


def test_sdist_holds_what_the_tests_need(sdist):
    _, _, names = sdist
    top = names[0].split("/")[0]
    rel = {n[len(top) + 1:] for n in names}
    missing = [m for m in MUST_HOLD if not any(r == m or r.startswith(m + "/") for r in rel)]
    assert not missing, missing
    assert not [r for r in rel if "__pycache__" in r or r.startswith(".venv")]


def test_licence_matches_the_metadata(sdist):
    _, src, _ = sdist
    meta = (src / "PKG-INFO").read_text()
    assert re.search(r"^License-Expression: BSD-2-Clause$", meta, re.M), meta[:1500]
    assert (src / "LICENSE").read_text().startswith("BSD 2-Clause License")


def test_the_suite_runs_from_the_unpacked_sdist(sdist):
    env, src, _ = sdist
    r = venvs.run(env, ["python", "-m", "pip", "install", "--disable-pip-version-check", "-q", f"{src}[test]"],
                  timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = venvs.run(env, ["python", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SUBSET], timeout=1200, cwd=src)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout)


def test_docs_generator_from_the_installed_package(sdist, tmp_path):
    env, _, _ = sdist
    r = venvs.run(env, ["python", "-m", "bnconvert.docs"], cwd=tmp_path)  # no checkout here
    if r.returncode and "No module named bnconvert" in r.stderr:
        pytest.fail("bnconvert is not installed in the sdist venv: " + r.stderr[-500:])
    assert r.returncode == 0, r.stderr
    assert "supported-layers:start" in r.stdout and "installed package" in r.stderr
    r = venvs.run(env, ["python", "-m", "bnconvert.docs", "--check"], cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--readme" in r.stderr, r.stderr
