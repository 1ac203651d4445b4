import subprocess
import sys

from helpers import ROOT


def test_readme_supported_layer_table_is_current():
    r = subprocess.run([sys.executable, "-m", "bnconvert.docs", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2, block
    demo, test = block
    assert "bnconvert caffe2keras sample_models/" in demo
    assert "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test
