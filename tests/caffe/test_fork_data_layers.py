"""The fork data-layer schemas and the public fork nets that use them (tests/nets/forks, see SOURCES.md):
DeepLab v2's ImageSegData (image_data_param.label_type ...), SegNet/ENet's DenseImageData
(dense_image_data_param), their text and binary forms, and how the inference graph treats them."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bnconvert import caffe_pb2
from bnconvert.caffe import load_net
from bnconvert.caffe.io import array_to_blob, read_caffemodel, read_prototxt
from bnconvert.errors import ParseError

from helpers import pb_field

from ._nets import write

FORKS = Path(__file__).resolve().parents[1] / "nets" / "forks"
NETS = sorted(p.name for p in FORKS.glob("*.prototxt"))
TEMPLATES = ["deeplab_v2_vgg16_test.prototxt", "deeplab_v2_resnet101_test.prototxt"]


def _line_of(path, pattern):
    lines = path.read_text().splitlines()
    return [i + 1 for i, s in enumerate(lines) if re.match(pattern, s)]


def test_fork_schema_fields_have_the_forks_names_numbers_and_defaults():
    lp = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert lp["dense_image_data_param"].number == 46  # ENet's number (SegNet's 138 is BVLC's tile_param)
    d = caffe_pb2.DenseImageDataParameter()
    assert [(f.name, f.number) for f in d.DESCRIPTOR.fields] == [
        ("source", 1), ("batch_size", 2), ("rand_skip", 3), ("shuffle", 4), ("new_height", 5), ("new_width", 6),
        ("is_color", 7), ("mean_file", 8), ("root_folder", 9), ("mirror", 10), ("crop_width", 11),
        ("crop_height", 12), ("label_divide_factor", 13)]
    assert (d.batch_size, d.is_color, d.label_divide_factor, d.root_folder) == (0, True, 1, "")
    idp = caffe_pb2.ImageDataParameter()
    f = idp.DESCRIPTOR.fields_by_name
    assert (f["ignore_label"].number, f["label_type"].number) == (15, 16)
    assert (idp.ignore_label, idp.label_type) == (255, caffe_pb2.ImageDataParameter.IMAGE)
    assert [(v.name, v.number) for v in caffe_pb2.ImageDataParameter.LabelType.DESCRIPTOR.values] == [
        ("NONE", 0), ("IMAGE", 1), ("PIXEL", 2)]
    t = caffe_pb2.TransformationParameter.DESCRIPTOR.fields_by_name
    assert [(n, t[n].number) for n in ("scale_factors", "crop_width", "crop_height")] == [
        ("scale_factors", 8), ("crop_width", 9), ("crop_height", 10)]


@pytest.mark.parametrize("name", ["deeplab_v2_vgg16_test_voc12.prototxt", "deeplab_v2_resnet101_test_voc12.prototxt"])
def test_deeplab_v2_image_seg_data(name):
    path = FORKS / name
    net = load_net(str(path))
    assert net.inputs == ["data"] and net.shapes["data"] == (1, 3, 513, 513)  # transform_param.crop_size
    assert net.layers[0].param.image_data_param.label_type in (caffe_pb2.ImageDataParameter.NONE,
                                                               caffe_pb2.ImageDataParameter.PIXEL)
    dropped = {d[0]: d[1] for d in net.dropped}
    assert dropped["data:data_dim"] == "ImageSegData"
    ignored = [w for w in net.warnings if "ignored unknown field" in w]
    field = "mat_write_param" if "vgg16" in name else "seg_accuracy_param"
    (line,) = _line_of(path, rf"\s*{field} {{")
    assert len(ignored) == 1 and ignored[0].startswith(f"{path}:{line}: layer ")
    assert f"ignored unknown field '{field}'" in ignored[0]


@pytest.mark.parametrize("name", TEMPLATES)
def test_deeplab_templates_fail_on_their_placeholder_with_its_line(name):
    path = FORKS / name
    (line, *_) = _line_of(path, r"\s*num_output: \$\{NUM_LABELS\}")
    with pytest.raises(ParseError) as ei:
        load_net(str(path))
    assert ei.value.line == line and "Couldn't parse integer" in str(ei.value)


@pytest.mark.parametrize("name", ["segnet_inference.prototxt", "segnet_basic_inference.prototxt"])
def test_segnet_dense_image_data(name):
    path = str(FORKS / name)
    assert read_prototxt(path).layer[0].dense_image_data_param.batch_size == 1  # a known field: strict read works
    with pytest.raises(Exception, match="--input-shape data=N,C,H,W"):
        load_net(path)  # no size in the prototxt: the image list decides it
    net = load_net(path, input_shapes={None: (1, 3, 360, 480)})  # the CamVid size its Upsample layers expect
    assert net.inputs == ["data"] and ("data:label", "DenseImageData") in [d[:2] for d in net.dropped]


@pytest.mark.parametrize("params,shape", [
    ("dense_image_data_param { batch_size: 2 new_height: 12 new_width: 10 }", (2, 3, 12, 10)),
    ("dense_image_data_param { batch_size: 2 crop_height: 6 crop_width: 4 new_height: 12 new_width: 10 }",
     (2, 3, 6, 4)),
    ("dense_image_data_param { batch_size: 2 is_color: false crop_height: 6 crop_width: 4 } "
     "transform_param { crop_size: 8 }", (2, 1, 8, 8)),
])
def test_dense_image_data_shape_as_segnet_sets_it_up(tmp_path, params, shape):
    text = (f'layer {{ name: "d" type: "DenseImageData" top: "data" top: "label" {params} }}\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    assert load_net(write(tmp_path, text)).shapes["data"] == shape


@pytest.mark.parametrize("params,shape", [
    ("image_data_param { batch_size: 1 label_type: NONE } transform_param { crop_size: 9 }", (1, 3, 9, 9)),
    ("image_data_param { batch_size: 2 } transform_param { crop_height: 5 crop_width: 7 }", (2, 3, 5, 7)),
    ("image_data_param { batch_size: 2 new_height: 11 new_width: 13 is_color: false }", (2, 1, 11, 13)),
])
def test_image_seg_data_shape_as_deeplab_sets_it_up(tmp_path, params, shape):
    text = (f'layer {{ name: "d" type: "ImageSegData" top: "data" top: "label" top: "data_dim" {params} }}\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')
    net = load_net(write(tmp_path, text))
    assert net.shapes["data"] == shape and net.inputs == ["data"] and net.outputs == ["r"]


@pytest.mark.parametrize("fork,number", [("SegNet", 138), ("ENet", 46)])
def test_fork_caffemodels_with_dense_image_data_load(tmp_path, fork, number):
    param = caffe_pb2.DenseImageDataParameter(source="/data/train.txt", batch_size=4, new_height=12, new_width=10,
                                              crop_height=8, crop_width=8, label_divide_factor=2)
    data = caffe_pb2.LayerParameter(name="data", type="DenseImageData", top=["data", "label"])
    conv = caffe_pb2.LayerParameter(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    w = np.arange(2 * 3 * 1 * 1, dtype=np.float32).reshape(2, 3, 1, 1)
    array_to_blob(w, conv.blobs.add())
    array_to_blob(np.array([0.5, -0.5], np.float32), conv.blobs.add())
    data_bytes = data.SerializeToString() + pb_field(number, 2, param.SerializeToString())
    body = pb_field(100, 2, data_bytes) + pb_field(100, 2, conv.SerializeToString())  # NetParameter.layer = 100
    cm = Path(tmp_path) / f"{fork}.caffemodel"
    cm.write_bytes(body)
    model = read_caffemodel(str(cm))
    got = model.layer[0]
    if number == 46:  # ENet's number is ours: the parameters decode as written
        assert got.dense_image_data_param == param
    else:  # SegNet's 138 is BVLC's tile_param: decoded as that (the data layer's parameters are never used)
        assert not got.HasField("dense_image_data_param") and got.tile_param.tiles == 4
    proto = write(tmp_path, 'layer { name: "data" type: "DenseImageData" top: "data" top: "label" '
                            'dense_image_data_param { batch_size: 1 new_height: 5 new_width: 5 } }\n'
                            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
                            'convolution_param { num_output: 2 kernel_size: 1 } }\n')
    net = load_net(proto, str(cm))
    np.testing.assert_array_equal(net.layer("conv").blobs[0], w)

