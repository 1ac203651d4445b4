import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "realcaffe: runs real BVLC pycaffe (skips, with the reason, without it)")


@pytest.fixture(scope="session")
def pycaffe():
    """Real BVLC pycaffe from $BNCONVERT_CAFFE_PREFIX (default /opt/bvlc-caffe), imported in a worker
    process (never into this one); a test using it skips with the reason when it is absent or does not
    import (see tests/realcaffe/runtime.py)."""
    from realcaffe.runtime import find_pycaffe

    caffe = find_pycaffe()
    yield caffe
    caffe.close()
