"""Concat, Slice, Split, Flatten, Reshape, Crop, Permute, Tile and ShuffleChannel."""
import numpy as np
import pytest

from bnconvert.errors import ConversionError

from helpers import assert_close

from ._util import check_numpy, convert, proto


def _layer(typ, params="", bottoms=("data",), tops=("out",), name=None):
    b = "".join(f'bottom: "{x}" ' for x in bottoms)
    t = "".join(f'top: "{x}" ' for x in tops)
    return f'layer {{ name: "{name or tops[0]}" type: "{typ}" {b}{t}{params} }}\n'


@pytest.mark.parametrize("params,axis,shapes", [
    ("", 1, [(2, 3, 4, 5), (2, 2, 4, 5)]),
    ("concat_param { axis: 2 }", 2, [(2, 3, 4, 5), (2, 3, 1, 5)]),
    ("concat_param { axis: -1 }", 3, [(2, 3, 4, 5), (2, 3, 4, 2)]),
    ("concat_param { concat_dim: 3 }", 3, [(2, 3, 4, 5), (2, 3, 4, 1)]),
    ("concat_param { axis: 0 }", 0, [(2, 3, 4, 5), (2, 3, 4, 5)]),
    ("", 1, [(2, 3), (2, 5)]),
    ("concat_param { axis: 2 }", 2, [(2, 3, 4), (2, 3, 2)]),
], ids=["channels", "axis2", "axis_neg", "concat_dim", "batch", "2d", "3d"])
def test_concat(tmp_path, params, axis, shapes):
    text = proto(_layer("Concat", params, ("a", "b")), inputs={"a": shapes[0], "b": shapes[1]})
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {"out": np.concatenate([x["a"], x["b"]], axis)})
    if "concat_dim" not in params:  # OpenCV does not read the legacy concat_dim
        assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("params,axis,points,shape", [
    ("slice_param { slice_point: 1 slice_point: 3 }", 1, [1, 3], (2, 5, 3, 4)),
    ("slice_param { axis: 2 }", 2, [2], (2, 3, 4, 5)),
    ("slice_param { axis: -1 slice_point: 2 slice_point: 3 }", 3, [2, 3], (2, 3, 4, 5)),
    ("slice_param { slice_dim: 1 slice_point: 4 }", 1, [4], (3, 6)),
], ids=["channels", "equal_parts", "last_axis", "slice_dim_2d"])
def test_slice(tmp_path, params, axis, points, shape):
    tops = [f"s{i}" for i in range(len(points) + 1)]
    text = proto(_layer("Slice", params, tops=tops), shape=shape)
    case, x, got = check_numpy(tmp_path, text, lambda c, x: dict(zip(tops, np.split(x["data"], points, axis))))
    if "slice_point" in params:  # OpenCV fails on equal parts along axis 2
        ref = case.opencv(x)
        for t in tops:
            assert_close(got[t], ref[t], t)


def test_split_feeds_several_consumers(tmp_path):
    body = (_layer("Split", "", tops=("s1", "s2"), name="split") + _layer("AbsVal", bottoms=("s1",), tops=("abs",)) +
            _layer("Eltwise", "eltwise_param { operation: PROD }", bottoms=("abs", "s2"), tops=("out",)))
    case, x, got = check_numpy(tmp_path, proto(body), lambda c, x: {"out": np.abs(x["data"]) * x["data"]})
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("params,shape,out_shape", [
    ("", (2, 3, 4, 5), (2, 60)),
    ("flatten_param { axis: 2 }", (2, 3, 4, 5), (2, 3, 20)),
    ("flatten_param { axis: 1 end_axis: 2 }", (2, 3, 4, 5), (2, 12, 5)),
    ("flatten_param { axis: 2 end_axis: -1 }", (2, 3, 4, 5), (2, 3, 20)),
    ("flatten_param { axis: 1 end_axis: 1 }", (2, 3, 4, 5), (2, 3, 4, 5)),
    ("", (2, 3, 4), (2, 12)),
], ids=["default", "axis2", "end_axis2", "end_neg", "noop", "3d"])
def test_flatten(tmp_path, params, shape, out_shape):
    text = proto(_layer("Flatten", params), shape=shape)
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {"out": x["data"].reshape(out_shape)})
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("params,out_shape", [
    ("shape { dim: 0 dim: -1 }", (2, 60)),
    ("shape { dim: 0 dim: 4 dim: 15 }", (2, 4, 15)),
    ("shape { dim: 0 dim: 0 dim: -1 }", (2, 3, 20)),
    ("shape { dim: 0 dim: 5 dim: 4 dim: 3 }", (2, 5, 4, 3)),
    ("shape { dim: 3 dim: 1 } axis: 1 num_axes: 1", (2, 3, 1, 4, 5)),
    ("shape { dim: -1 } axis: 2", (2, 3, 20)),
    ("shape { dim: 10 dim: 2 } axis: -3 num_axes: 2", (2, 3, 10, 2)),
    ("shape { dim: 1 } axis: 0 num_axes: 0", (1, 2, 3, 4, 5)),
    ("shape { dim: 0 dim: 3 dim: 20 dim: 1 }", (2, 3, 20, 1)),
], ids=["flat", "explicit", "copy_infer", "4d", "axis1_num_axes1", "axis2_infer", "axis_neg", "prepend", "to_4d"])
def test_reshape(tmp_path, params, out_shape):
    text = proto(_layer("Reshape", f"reshape_param {{ {params} }}"), shape=(2, 3, 4, 5))
    if out_shape[0] != 2:
        with pytest.raises(ConversionError, match="batch"):
            convert(tmp_path, text)
        return
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {"out": x["data"].reshape(out_shape)})
    if len(out_shape) <= 4 and "axis: -" not in params:  # OpenCV: 4-d at most, no negative axis
        assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("params,ref_shape,offsets", [
    ("crop_param { axis: 2 offset: 1 }", (2, 3, 4, 3), (0, 0, 1, 1)),
    ("crop_param { axis: 2 offset: 2 offset: 0 }", (2, 3, 3, 5), (0, 0, 2, 0)),
    ("crop_param { axis: 1 offset: 1 offset: 2 offset: 3 }", (2, 2, 3, 4), (0, 1, 2, 3)),
    ("crop_param { axis: 3 offset: 2 }", (2, 3, 6, 4), (0, 0, 0, 2)),
    ("", (2, 3, 4, 5), (0, 0, 0, 0)),
], ids=["spatial", "per_axis", "channels_too", "last_axis", "default"])
def test_crop(tmp_path, params, ref_shape, offsets):
    text = proto(_layer("Crop", params, ("data", "ref")), inputs={"data": (2, 3, 6, 7), "ref": ref_shape})

    def ref(c, x):
        axis = 2 if not params else int(params.split("axis: ")[1].split()[0])
        sl = tuple(slice(o, o + (ref_shape[a] if a >= axis else 99)) for a, o in enumerate(offsets))
        return {"out": x["data"][sl]}

    case, x, got = check_numpy(tmp_path, text, ref)
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("order", [(0, 2, 3, 1), (0, 3, 1, 2), (0, 1, 3, 2), (0, 2, 1, 3), (0, 1, 2, 3), (0, 3)])
def test_permute(tmp_path, order):
    params = "permute_param { " + " ".join(f"order: {o}" for o in order) + " }"
    full = list(order) + [i for i in range(4) if i not in order]
    body = _layer("Permute", params, tops=("perm",)) + _layer("Flatten", bottoms=("perm",), tops=("out",))
    case, x, got = check_numpy(tmp_path, proto(body, shape=(2, 3, 4, 5)),
                               lambda c, x: {"out": x["data"].transpose(full).reshape(2, -1)})
    if len(order) == 4:  # OpenCV needs the full order
        assert_close(got["out"], case.opencv(x)["out"], "opencv")


def test_permute_of_batch_axis_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="batch"):
        convert(tmp_path, proto(_layer("Permute", "permute_param { order: 1 order: 0 }")))


@pytest.mark.parametrize("params,axis,tiles,shape", [
    ("tile_param { tiles: 3 }", 1, 3, (2, 3, 4, 5)),
    ("tile_param { axis: 2 tiles: 2 }", 2, 2, (2, 3, 4, 5)),
    ("tile_param { axis: -1 tiles: 2 }", 3, 2, (2, 3, 4, 5)),
    ("tile_param { tiles: 4 }", 1, 4, (2, 3)),
])
def test_tile(tmp_path, params, axis, tiles, shape):
    text = proto(_layer("Tile", params), shape=shape)
    reps = [1] * len(shape)
    reps[axis] = tiles
    check_numpy(tmp_path, text, lambda c, x: {"out": np.tile(x["data"], reps)})


@pytest.mark.parametrize("group", [1, 2, 3])
def test_shuffle_channel(tmp_path, group):
    text = proto(_layer("ShuffleChannel", f"shuffle_channel_param {{ group: {group} }}"), shape=(2, 6, 3, 4))

    def ref(c, x):
        n, ch, h, w = x["data"].shape
        return {"out": x["data"].reshape(n, group, ch // group, h, w).transpose(0, 2, 1, 3, 4).reshape(n, ch, h, w)}

    case, x, got = check_numpy(tmp_path, text, ref)
    assert_close(got["out"], case.opencv(x)["out"], "opencv")
