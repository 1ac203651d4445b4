"""Property-based fuzzing of the prototxt reader, the caffemodel reader and the graph builder.

Every input must give a result or a well-formed ConversionError (file named, one line, no wrapped
Python exception) -- never another exception, a hang (the deadline) or a crash. The mutators are
shared with the long run, ``python fuzz/run.py --minutes 10``.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from helpers import ROOT, SHARED

sys.path.insert(0, str(ROOT / "fuzz"))
import targets as T  # noqa: E402

ZOO, PAIRS = T.seed_files(str(SHARED))
FAST = settings(max_examples=40, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


def _need_seeds():
    if not ZOO or not PAIRS:
        pytest.skip(f"no seed files under {SHARED} (zoo/ prototxts and caffe-ref/ caffemodels)")


@FAST
@given(data=st.binary(max_size=400))
def test_random_bytes_as_prototxt(tmp_path, data):
    assert T.check_prototxt_bytes(data, str(tmp_path)) is None


@FAST
@given(text=st.text(alphabet=st.sampled_from(list('layer{}:"#\n\r name type bottom top Input 0123-.x\\')), max_size=200))
def test_random_prototxt_like_text(tmp_path, text):
    assert T.check_prototxt_bytes(text.encode("utf-8"), str(tmp_path)) is None


@FAST
@given(seed=st.integers(0, 2 ** 32))
def test_token_soup(tmp_path, seed):
    assert T.check_prototxt_bytes(T.random_text(random.Random(seed)), str(tmp_path)) is None


@FAST
@given(seed=st.integers(0, 2 ** 32), index=st.integers(0, 10 ** 6))
def test_mutated_zoo_prototxts(tmp_path, seed, index):
    _need_seeds()
    src = Path(ZOO[index % len(ZOO)]).read_bytes()
    assert T.check_prototxt_bytes(T.mutate_text(src, random.Random(seed)), str(tmp_path)) is None


@FAST
@given(data=st.binary(max_size=600))
def test_random_bytes_as_caffemodel(tmp_path, data):
    _need_seeds()
    proto = [p for p, _ in PAIRS if "bn_factor_zero" in p] or [PAIRS[0][0]]
    assert T.check_caffemodel_bytes(proto[0], data, str(tmp_path)) is None


@FAST
@given(seed=st.integers(0, 2 ** 32), index=st.integers(0, 10 ** 6))
def test_truncated_and_bitflipped_caffemodels(tmp_path, seed, index):
    _need_seeds()
    small = [(p, m) for p, m in PAIRS if Path(m).stat().st_size < 400_000]
    proto, model = small[index % len(small)]
    data = T.mutate_binary(Path(model).read_bytes(), random.Random(seed))
    assert T.check_caffemodel_bytes(proto, data, str(tmp_path)) is None


@settings(max_examples=150, deadline=3000)
@given(seed=st.integers(0, 2 ** 32))
def test_random_layer_lists(seed):
    assert T.check_net_param(T.random_net(random.Random(seed))) is None


def test_the_oracle_catches_bugs():
    """classify() flags what the fuzz targets must never do."""
    from bnconvert.errors import ConversionError, ShapeError

    def leaked():
        raise ShapeError("cannot infer (IndexError: list index out of range)", file="x")

    assert T.classify(lambda: None) is None
    assert T.classify(lambda: (_ for _ in ()).throw(ShapeError("bad", file="x"))) is None
    assert T.classify(lambda: [][1]).startswith("IndexError")
    assert "wraps a Python exception" in T.classify(leaked)
    assert "without a file" in T.classify(lambda: (_ for _ in ()).throw(ConversionError("no file")))


# --- structure and output-path targets (issue 14) -----------------------------------------------

import outputs as O  # noqa: E402
import structure as S  # noqa: E402


@settings(max_examples=12, deadline=20000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32), index=st.integers(0, 10 ** 6))
def test_structure_mutations(tmp_path, seed, index):
    _need_seeds()
    src = Path(ZOO[index % len(ZOO)]).read_bytes()
    assert T.check_prototxt_bytes(S.mutate_structure(src, random.Random(seed)), str(tmp_path)) is None


def test_structure_mutations_change_layer_count_and_depth():
    _need_seeds()
    src = Path(ZOO[0]).read_bytes()
    counts = {len(S.parse(S.mutate_structure(src, random.Random(s))).layer) for s in range(12)}
    assert max(counts) >= len(S.parse(src).layer) + 50 and len(counts) > 3
    nested = S._nest(b'layer { name: "a" }', random.Random(1))
    assert nested.count(b"{") >= 50


@settings(max_examples=10, deadline=60000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32))
def test_output_path_arguments(tmp_path, seed):
    _need_seeds()
    rng = random.Random(seed)
    assert O.check_outputs(rng, rng.choice(PAIRS), O.small_pair(PAIRS), str(tmp_path)) is None


def test_output_judge_catches_bugs(tmp_path):
    """_judge flags a changed input, a leftover file and an output changed by a failed run."""
    tmp = str(tmp_path)
    inp, out = tmp_path / "in.prototxt", tmp_path / "out.prototxt"
    inp.write_text("a")
    before = O._snapshot(tmp)
    inp.write_text("b")
    assert "changed the input" in O._judge(0, "", ["x"], tmp, before, [str(inp)], [str(out)])
    inp.write_text("a")
    (tmp_path / ".out.prototxt.tmp").write_text("partial")
    assert "left" in O._judge(2, "", ["x"], tmp, before, [str(inp)], [str(out)])
    (tmp_path / ".out.prototxt.tmp").unlink()
    out.write_text("new")
    assert "failed (exit 2) but changed" in O._judge(2, "", ["x"], tmp, before, [str(inp)], [str(out)])
    assert "internal error" in O._judge(2, "error: internal error: X", ["x"], tmp, before, [], [str(out)])
