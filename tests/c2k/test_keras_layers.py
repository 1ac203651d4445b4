"""The custom Keras layers (bnconvert/keras_layers/): configs, errors, saving a converted model
that uses every one of them and loading it in a fresh process with safe_mode, and fine-tuning the
converted BatchNormalization."""
import inspect
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import bnconvert.keras_layers as kl
from bnconvert.testing import random_caffemodel, random_inputs, run_keras

from helpers import ROOT, assert_close

NET = ROOT / "tests" / "nets" / "c2k" / "all_custom_layers.prototxt"
CUSTOM = sorted(name for name, obj in vars(kl).items()
                if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and obj.__module__.startswith(kl.__name__ + "."))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from bnconvert.c2k import convert_caffe

    d = tmp_path_factory.mktemp("custom")
    cm = d / "w.caffemodel"
    net = random_caffemodel(str(NET), str(cm), seed=4)
    model, report = convert_caffe(str(NET), str(cm))
    return d, net, model, report


def test_net_uses_every_custom_layer(converted):
    _, _, model, _ = converted
    used = {type(layer).__name__ for layer in model.layers}
    assert set(CUSTOM) <= used, f"not used: {sorted(set(CUSTOM) - used)}"


def test_saved_model_loads_in_fresh_process_with_safe_mode(converted):
    d, net, model, report = converted
    path = d / "model.keras"
    model.save(path)
    x = random_inputs(net, seed=7)
    np.save(d / "x.npy", np.transpose(x["data"], (0, 2, 3, 1)))
    expected = model(np.transpose(x["data"], (0, 2, 3, 1)), training=False)
    script = textwrap.dedent(f"""
        import numpy as np
        import bnconvert, keras
        m = keras.saving.load_model({str(path)!r}, safe_mode=True)
        outs = m(np.load({str(d / 'x.npy')!r}), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        np.savez({str(d / 'out.npz')!r}, *[np.asarray(o) for o in outs])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=300)
    loaded = np.load(d / "out.npz")
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    assert len(loaded.files) == len(expected)
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(loaded[f"arr_{i}"], np.asarray(e))


@pytest.mark.parametrize("name", CUSTOM)
def test_config_round_trip(converted, name):
    _, _, model, _ = converted
    layer = next(la for la in model.layers if type(la).__name__ == name)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(type(layer)) == f"bnconvert>{name}"


@pytest.mark.parametrize("make,match", [
    (lambda: kl.CaffePooling2D("min", (2, 2)), "method"),
    (lambda: kl.CaffePooling2D("max", (2, 2), padding=(2, 0)), "padding"),
    (lambda: kl.CaffeLRN(local_size=4), "local_size"),
    (lambda: kl.CaffeLRN(norm_region="x"), "norm_region"),
    (lambda: kl.CaffeUnary("sqrt"), "op"),
    (lambda: kl.CaffeUnary("log", base=0.0), "base"),
    (lambda: kl.CaffeScale((3,), use_scale=False, use_bias=False), "use_scale"),
    (lambda: kl.BroadcastTo((1, 1, 3), op="sub"), "op"),
    (lambda: kl.CaffeReduce("max", (1,)), "op"),
    (lambda: kl.CaffeTile(1, 0), "tiles"),
])
def test_bad_arguments_say_what_they_received(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "Received:" in str(info.value)


def test_caffe_pooling_layer_directly():
    """CaffePooling2D on its own: ceil rounding, the clip of windows starting in the padding, divisors."""
    x = np.arange(2 * 5 * 5 * 1, dtype=np.float32).reshape(2, 5, 5, 1)
    y = np.asarray(kl.CaffePooling2D("ave", (2, 2), (2, 2), (1, 1))(x))
    # Caffe: ceil((5 + 2*1 - 2) / 2) + 1 = 4 windows, but the 4th starts at 3*2 = 6 >= 5 + 1 (in the padding): 3
    assert y.shape == (2, 3, 3, 1)
    # top-left window covers padding row/col and x[0,0]: divisor 4 (padding counts)
    assert y[0, 0, 0, 0] == pytest.approx(x[0, 0, 0, 0] / 4)
    m = np.asarray(kl.CaffePooling2D("max", (3, 3), (2, 2))(-np.abs(x) - 1))
    assert m.shape == (2, 2, 2, 1) and m.max() <= -1  # ceil overhang: 2 windows, the overhang never wins


def test_converted_batchnorm_fine_tunes(converted):
    """The converted BatchNormalization trains like any Keras one: gradients reach gamma/beta and the
    conv kernel, and a training step moves the moving statistics by the Caffe momentum."""
    import tensorflow as tf

    d, net, model, report = converted
    bn = next(la for la in model.layers if isinstance(la, keras.layers.BatchNormalization))
    assert bn.trainable and bn.momentum == pytest.approx(0.999)
    mean0, var0 = bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()
    gamma0 = bn.gamma.numpy().copy()
    x = np.transpose(random_inputs(net, seed=3)["data"], (0, 2, 3, 1))
    sub = keras.Model(model.inputs, model.get_layer("pool1").output)
    with tf.GradientTape() as tape:
        y = sub(x, training=True)
        loss = tf.reduce_mean(tf.square(y - 1.0))
    grads = tape.gradient(loss, sub.trainable_variables)
    assert all(g is not None and np.any(np.asarray(g) != 0) for g in grads)
    batch_mean = np.asarray(model.get_layer("conv1")(x)).mean(axis=(0, 1, 2))
    assert_close(bn.moving_mean.numpy(), 0.999 * mean0 + 0.001 * batch_mean, "moving_mean", rel=1e-4)
    assert np.any(bn.moving_variance.numpy() != var0)
    sub.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    sub.fit(x, np.ones(sub.output.shape[1:], np.float32)[None].repeat(2, 0), epochs=1, batch_size=2, verbose=0)
    assert np.any(bn.gamma.numpy() != gamma0)


def test_inference_is_deterministic(converted):
    """Inference (training=False) gives the same outputs every call: Dropout and batch statistics are off."""
    d, net, model, report = converted
    x = random_inputs(net, seed=9)
    a = run_keras(model, x, list(report["inputs"]))
    b = run_keras(model, x, list(report["inputs"]))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
