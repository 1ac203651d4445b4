"""bnconvert/commands/_text.py: the text inspect and upgrade share, so neither imports the other."""
from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_inspect_and_upgrade_do_not_import_each_other():
    for mod, other in (("upgrade", "inspect"), ("inspect", "upgrade")):
        code = (f"import sys, bnconvert.commands.{mod}; "
                f"print('bnconvert.commands.{other}' in sys.modules)")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
        assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr[-1000:]


def test_table_and_upgrade_phrases():
    from bnconvert.commands._text import describe_upgrades, table

    text = table(["name", "n"], [["a", "1"], ["bb", "22"]])
    assert text.splitlines() == ["  name   n", "  ----  --", "  a      1", "  bb    22"]
    assert describe_upgrades({"v1_layers": True, "reshaped": ["x"]}) == ["V1 layers -> V2 layer",
                                                                         "1 legacy blob given a shape"]
