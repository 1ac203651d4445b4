"""keras.applications models with random weights and randomized BatchNorm statistics, run by OpenCV dnn."""
import keras
import numpy as np
import pytest

A = keras.applications

# (constructor, input size): reduced sizes keep CI fast; InceptionV3 needs at least 75.
APPS = {
    "ResNet50": (A.ResNet50, 64), "ResNet50V2": (A.ResNet50V2, 64), "MobileNet": (A.MobileNet, 64),
    "MobileNetV2": (A.MobileNetV2, 64), "VGG16": (A.VGG16, 48), "DenseNet121": (A.DenseNet121, 64),
    "InceptionV3": (A.InceptionV3, 75), "EfficientNetB0": (A.EfficientNetB0, 64),
}


def randomize_batchnorm(model, seed=0):
    """Realistic random gamma, beta, moving mean and variance for every BatchNormalization."""
    rng = np.random.default_rng(seed)
    draw = {"gamma": lambda s: rng.uniform(0.6, 1.4, s), "beta": lambda s: rng.normal(0, 0.2, s),
            "moving_mean": lambda s: rng.normal(0, 0.5, s), "moving_variance": lambda s: rng.uniform(0.5, 2.0, s)}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([draw[w.path.split("/")[-1]](w.shape).astype("float32") for w in layer.weights])
    return model


@pytest.mark.parametrize("name", list(APPS))
def test_application(check, name):
    ctor, size = APPS[name]
    model = randomize_batchnorm(ctor(weights=None, input_shape=(size, size, 3), classes=10,
                                     classifier_activation=None))
    report = check(model, seed=1)
    assert len(report["batchnorm"]) == sum(isinstance(x, keras.layers.BatchNormalization) for x in model.layers)
    assert list(report["inputs"]) == [model.inputs[0]._keras_history.operation.name]
    assert list(report["outputs"]) == [model.layers[-1].name]
