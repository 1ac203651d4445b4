"""Every test of this tier is marked ``realcaffe`` (deselect with ``-m 'not realcaffe'``)."""
import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "realcaffe" in item.nodeid.split("::")[0].split("/"):
            item.add_marker(pytest.mark.realcaffe)
