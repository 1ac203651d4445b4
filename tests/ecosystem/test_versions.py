"""The oldest dependency versions pyproject.toml allows, in a second cached venv, run the smoke tests.

The newest supported versions are the main environment's (the README's test command installs them).
"""
import re

import pytest

from helpers import ROOT

from . import venvs

# Every real-Caffe case, saving and loading in fresh processes, backend choice, a SavedModel export.
SMOKE = ["tests/c2k/test_caffe_ref.py", "tests/test_package.py", "tests/test_backend.py",
         "tests/commands/test_caffe_to_keras.py::test_savedmodel_format"]


@pytest.fixture(scope="module")
def oldest():
    return venvs.venv("oldest-tf")


def test_the_oldest_versions_resolve_together(oldest):
    r = venvs.run(oldest, ["python", "-m", "pip", "list", "--format=freeze"])
    have = dict(line.lower().split("==", 1) for line in r.stdout.splitlines() if "==" in line)
    for pin in venvs.OLDEST:
        name, version = pin.lower().split("==")
        assert have.get(name) == version, f"{name}: installed {have.get(name)}, expected {version}"
    assert "tensorflow-cpu" not in have


def test_pyproject_lower_bounds_are_the_tested_versions():
    text = (ROOT / "pyproject.toml").read_text()
    for pin in venvs.OLDEST:
        name, version = pin.split("==")
        m = re.search(rf'"{name}(?:\[[a-z]+\])?>=([0-9.]+)', text)
        assert m, name
        lower = tuple(int(x) for x in m.group(1).split("."))
        tested = tuple(int(x) for x in version.split("."))
        assert tested[:len(lower)] == lower, f"{name}: pyproject says >={m.group(1)}, the test installs {version}"


def test_smoke_tests_pass_on_the_oldest_versions(oldest):
    r = venvs.run(oldest, ["python", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SMOKE],
                  timeout=1200, cwd=None)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-2000:])
    assert re.search(r"\d+ passed", r.stdout), r.stdout[-2000:]
