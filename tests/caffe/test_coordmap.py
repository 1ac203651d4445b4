"""bnconvert.caffe.coordmap: HED's fork's Crop offsets from coordinate maps (crop_offsets="coordmap")."""
from __future__ import annotations

import random
from fractions import Fraction

import pytest

from bnconvert.caffe import load_net
from bnconvert.caffe.coordmap import crop_rows
from bnconvert.errors import GraphError, ShapeError

HEADER = 'input: "data" input_shape { dim: 1 dim: 1 dim: %d dim: %d }\n'


def conv(name, bottom, k, s=1, p=0, t="Convolution", extra=""):
    return (f'layer {{ name: "{name}" type: "{t}" bottom: "{bottom}" top: "{name}" convolution_param {{ '
            f'num_output: 1 kernel_size: {k} stride: {s} pad: {p} {extra} }} }}\n')


def pool(name, bottom, k, s, p=0):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}" '
            f'pooling_param {{ pool: MAX kernel_size: {k} stride: {s} pad: {p} }} }}\n')


def crop(name, b0, b1, param=""):
    return f'layer {{ name: "{name}" type: "Crop" bottom: "{b0}" bottom: "{b1}" top: "{name}" {param} }}\n'


def layer(name, type_, bottoms, top=None):
    bs = " ".join(f'bottom: "{b}"' for b in bottoms)
    return f'layer {{ name: "{name}" type: "{type_}" {bs} top: "{top or name}" }}\n'


def load(tmp_path, text, hw=(16, 16), mode="coordmap"):
    p = tmp_path / "net.prototxt"
    p.write_text(HEADER % hw + text)
    return load_net(str(p), crop_offsets=mode)


def offsets(net):
    return {L.name: L.coord_offsets for L in net.layers if L.type == "Crop"}


def test_hand_computed_offsets(tmp_path):
    # conv k5 pad 1: top x sits at bottom x + 1, so the data cropped to it starts at 1.
    # pool k2 s2 then deconv k4 s2: 2 * (x / 2 - 1/4) + 3/2 = x + 1, so the upsampled map crops at 1.
    # conv k3 pad 3 (+2), then deconv k3 s1 pad 0 (+1): cropped to data at 3.
    text = (conv("c5", "data", 5, p=1) + crop("a", "data", "c5")
            + pool("p", "data", 2, 2) + conv("up", "p", 4, s=2, t="Deconvolution") + crop("b", "up", "data")
            + conv("c3", "data", 3, p=3) + conv("d3", "c3", 3, t="Deconvolution") + crop("c", "d3", "data"))
    net = load(tmp_path, text)
    assert offsets(net) == {"a": (1, 1), "b": (1, 1), "c": (3, 3)}
    assert net.shapes[net.final_blob("a")] == (1, 1, 14, 14)


def test_kernel_stride_pad_per_axis(tmp_path):
    text = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 1 '
            'kernel_h: 1 kernel_w: 5 pad_h: 2 pad_w: 4 } }\n' + crop("k", "c", "data"))
    net = load(tmp_path, text)  # h: 1x1 pad 2 -> +2; w: k5 pad 4 -> +2
    assert offsets(net) == {"k": (2, 2)}
    text = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 1 '
            'kernel_h: 1 kernel_w: 3 pad_h: 3 pad_w: 2 } }\n' + crop("k", "c", "data"))
    assert offsets(load(tmp_path, text)) == {"k": (3, 1)}


def test_in_place_and_elementwise_layers_follow_the_first_bottom(tmp_path):
    text = (conv("c", "data", 3, p=2) + layer("r", "ReLU", ["c"], "c")
            + layer("d", "Dropout", ["c"], "c") + pool("p", "data", 3, 2)
            + conv("c2", "p", 4, s=2, t="Deconvolution")  # 18x18 like 'c', but at x + 1/2
            + layer("e", "Eltwise", ["c", "c2"]) + layer("cat", "Concat", ["e", "c2"])
            + layer("s", "Sigmoid", ["cat"]) + crop("k", "s", "data"))
    assert offsets(load(tmp_path, text)) == {"k": (1, 1)}  # only conv 'c' (pad 2, +1) is on the path
    with pytest.raises(GraphError, match="would be 1/2"):  # the second bottom's own alignment
        load(tmp_path, text + crop("k2", "c2", "data"))


def test_a_crop_on_the_path_shifts_by_its_own_offset(tmp_path):
    text = (conv("c", "data", 3, p=4) + crop("k1", "c", "data") + conv("c2", "k1", 3, p=3)
            + crop("k2", "c2", "data"))
    # k1 undoes c's +3, so k1 is aligned with data and c2 (+2) crops at 2
    assert offsets(load(tmp_path, text)) == {"k1": (3, 3), "k2": (2, 2)}


def test_crop_param_is_kept_in_coordmap_mode(tmp_path):
    text = conv("c", "data", 3, p=4) + crop("k", "c", "data", "crop_param { axis: 2 offset: 1 }")
    net = load(tmp_path, text)
    assert offsets(net) == {"k": None}
    (row,) = crop_rows(net)
    assert row["offsets"] == [1, 1] and row["source"] == "crop_param" and row["coordmap_offsets"] == [3, 3]


def test_bvlc_reading_is_the_default_and_warns(tmp_path):
    text = conv("c", "data", 3, p=4) + crop("k", "c", "data")
    net = load(tmp_path, text, mode="param")
    assert offsets(net) == {"k": None}
    (w,) = [w for w in net.warnings if "Crop" in w]
    assert "'k' at (3, 3)" in w and "--crop-offsets coordmap" in w
    (row,) = crop_rows(net)
    assert row["offsets"] == [0, 0] and row["source"].startswith("no crop_param") and row["coordmap_offsets"] == [3, 3]
    # no warning where both readings agree
    assert not [w for w in load(tmp_path, conv("c", "data", 3, p=1) + crop("k", "c", "data"),
                                mode="param").warnings if "Crop" in w]


@pytest.mark.parametrize("text, match", [
    (conv("c", "data", 2) + crop("k", "data", "c"), r"offset along h would be 1/2"),
    (pool("p", "data", 2, 2) + crop("k", "p", "data"), r"differ in scale along h \(2 per pixel\)"),
    (conv("c", "data", 3, p=1) + conv("c2", "c", 3) + crop("k", "c2", "c"), r"would be -1"),
    ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 256 } }\n'
     'layer { name: "rs" type: "Reshape" bottom: "ip" top: "rs" reshape_param { shape { dim: 1 dim: 1 dim: 16 '
     'dim: 16 } } }\n' + crop("k", "rs", "data"), r"layer 'rs' \(Reshape\) has no coordinate map"),
])
def test_refused_where_the_fork_aborts(tmp_path, text, match):
    with pytest.raises(GraphError, match=match) as ei:
        load(tmp_path, text)
    assert ei.value.layer == "k"


def test_bvlc_reading_still_checks_the_crop_fits(tmp_path):
    with pytest.raises(ShapeError, match="runs past"):
        load(tmp_path, conv("c", "data", 3, p=1) + conv("c2", "c", 3) + crop("k", "c2", "c"), mode="param")


# --- FCN: BVLC's python/caffe/coord_map.py wrote these crop_params (voc-fcn32s/16s/8s) -------------

def vgg_fcn(skips):
    """FCN's VGG-16 geometry (1 channel): conv1_1 pad 100, 3x3 pad 1 convolutions, 2x2 pools, fc6 7x7."""
    t, bottom = "", "data"
    for stage, n in enumerate((2, 2, 3, 3, 3), 1):
        for i in range(1, n + 1):
            t += conv(f"conv{stage}_{i}", bottom, 3, p=100 if (stage, i) == (1, 1) else 1)
            t += layer(f"relu{stage}_{i}", "ReLU", [f"conv{stage}_{i}"], f"conv{stage}_{i}")
            bottom = f"conv{stage}_{i}"
        t += pool(f"pool{stage}", bottom, 2, 2)
        bottom = f"pool{stage}"
    t += conv("fc6", "pool5", 7) + conv("fc7", "fc6", 1) + conv("score_fr", "fc7", 1)
    if skips == 0:
        return t + conv("upscore", "score_fr", 64, s=32, t="Deconvolution") + crop("score", "upscore", "data")
    t += conv("upscore2", "score_fr", 4, s=2, t="Deconvolution") + conv("score_pool4", "pool4", 1)
    t += crop("score_pool4c", "score_pool4", "upscore2") + layer("fuse_pool4", "Eltwise", ["upscore2", "score_pool4c"])
    if skips == 1:
        return t + conv("upscore16", "fuse_pool4", 32, s=16, t="Deconvolution") + crop("score", "upscore16", "data")
    t += conv("upscore_pool4", "fuse_pool4", 4, s=2, t="Deconvolution") + conv("score_pool3", "pool3", 1)
    t += crop("score_pool3c", "score_pool3", "upscore_pool4")
    t += layer("fuse_pool3", "Eltwise", ["upscore_pool4", "score_pool3c"])
    return t + conv("upscore8", "fuse_pool3", 16, s=8, t="Deconvolution") + crop("score", "upscore8", "data")


@pytest.mark.parametrize("skips, expected", [
    (0, {"score": (19, 19)}),
    (1, {"score_pool4c": (5, 5), "score": (27, 27)}),
    (2, {"score_pool4c": (5, 5), "score_pool3c": (9, 9), "score": (31, 31)}),
])
def test_fcn_offsets_equal_the_published_crop_params(tmp_path, skips, expected):
    assert offsets(load(tmp_path, vgg_fcn(skips), hw=(32, 32))) == expected


def coord_map_reference(chain):
    """BVLC coord_map.py's rule, re-derived: scale a and shift b of each layer (top = a * bottom + b),
    composed along a chain from the input; Crop offset = -b of the map from the last top to the input."""
    a, b = Fraction(1), Fraction(0)
    for kind, k, s, p, d in chain:
        ks = (k - 1) * d + 1
        if kind == "Deconvolution":
            la, lb = Fraction(s), Fraction(ks - 1, 2) - p
        else:
            la, lb = Fraction(1, s), (p - Fraction(ks - 1, 2)) / s
        a, b = la * a, la * b + lb
    # input pixel 0 sits at top pixel b: the top cropped to the input starts there
    return a, b


def test_random_chains_match_coord_map_py(tmp_path):
    rng = random.Random(7)
    checked = 0
    for trial in range(60):
        chain, text, bottom = [], "", "data"
        for i in range(rng.randint(1, 4)):
            kind = rng.choice(["Convolution", "Pooling"])
            k, s = rng.randint(1, 4), rng.choice([1, 2])
            p = rng.randint(0, k - 1) + (rng.randint(0, 6) if kind == "Convolution" else 0)
            d = rng.choice([1, 2]) if kind == "Convolution" else 1
            chain.append((kind, k, s, p, d))
            name = f"l{i}"
            text += (pool(name, bottom, k, s, p) if kind == "Pooling"
                     else conv(name, bottom, k, s=s, p=p, extra=f"dilation: {d}"))
            bottom = name
        total = 1
        for _, _, s, _, _ in chain:
            total *= s
        kd = rng.choice([total, 2 * total])
        chain.append(("Deconvolution", kd, total, 0, 1))
        text += conv("up", bottom, kd, s=total, t="Deconvolution") + crop("k", "up", "data")
        a, off = coord_map_reference(chain)
        assert a == 1
        try:
            net = load(tmp_path, text, hw=(40, 40))
        except (GraphError, ShapeError) as e:  # negative/fractional offsets, or too small for the crop
            assert off < 0 or off.denominator != 1 or isinstance(e, ShapeError), (chain, off, e)
            continue
        assert off.denominator == 1 and off >= 0
        assert offsets(net)["k"] == (int(off), int(off)), chain
        checked += 1
    assert checked >= 15


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(GraphError, match=r"crop offsets must be one of param, coordmap. Received: 'hed'"):
        load(tmp_path, conv("c", "data", 3, p=4) + crop("k", "c", "data"), mode="hed")


def test_bad_geometry_on_the_walk_is_refused_on_its_own_layer(tmp_path):
    text = pool("p", "data", 2, 2, p=2) + conv("up", "p", 4, s=2, t="Deconvolution") + crop("k", "up", "data")
    with pytest.raises(ShapeError, match="pad .* must be smaller than the kernel") as ei:
        load(tmp_path, text)
    assert ei.value.layer == "p"
