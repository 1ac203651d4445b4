"""Regenerate the caffemodels in sample_models/ (seeded, so the files are reproducible).

    python tools/make_samples.py
"""
from pathlib import Path

from bnconvert.testing import random_caffemodel

ROOT = Path(__file__).resolve().parents[1] / "sample_models"

SAMPLES = [
    (ROOT / "mini_resnet" / "deploy.prototxt", ROOT / "mini_resnet" / "weights.caffemodel", 1),
    (ROOT / "cifar_bn" / "cifar_bn.prototxt", ROOT / "cifar_bn" / "cifar_bn.caffemodel", 2),
]

if __name__ == "__main__":
    for proto, model, seed in SAMPLES:
        net = random_caffemodel(proto, model, seed=seed)
        print(f"{model.relative_to(ROOT.parent)}: {sum(len(L.blobs) for L in net.layers)} blobs, "
              f"{model.stat().st_size} bytes")
