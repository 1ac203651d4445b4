#!/bin/sh
# The device-side command line behind docs/gpu-verification.md (run from the repository root).
#
# The GPU machine has no network and no TensorFlow (Keras runs with the JAX backend), and its
# OpenCV 5 has no Caffe importer. Prepare here:
#   mkdir -p .cache/gpu/whl .cache/gpu/zoo .cache/gpu/resnet50_slim .cache/cvwhl
#   P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64"
#   python -m pip download $P -d .cache/gpu/whl keras==3.15.1 namex==0.1.0 optree==0.20.0
#   python -m pip download $P -d .cache/cvwhl opencv-python-headless==4.14.0.94   # 62 MB
#   cp ../shared/zoo/resnet50/ResNet-50-deploy.prototxt .cache/gpu/zoo/
#   cp ../shared/caffe-ref/resnet50_slim/* .cache/gpu/resnet50_slim/
# The 64 MiB carry limit does not hold the OpenCV wheel and the slim case together, so run it
# twice: carrying .cache/gpu/whl + .cache/gpu/resnet50_slim, then .cache/gpu/whl + .cache/gpu/zoo +
# .cache/cvwhl. The script runs whatever cases it finds. OUT: where the reports go.
set -e
OUT=${OUT:-/tmp/gpu-verify}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .cache/gpu/whl/*.whl $(ls .cache/cvwhl/*.whl 2>/dev/null)
export PYTHONPATH=/tmp/site KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
set --
[ -f .cache/gpu/zoo/ResNet-50-deploy.prototxt ] && set -- "$@" --zoo-prototxt .cache/gpu/zoo/ResNet-50-deploy.prototxt
[ -d .cache/gpu/resnet50_slim ] && set -- "$@" --slim .cache/gpu/resnet50_slim
python3 tools/gpu_verify.py "$@" --out "$OUT" 2>&1 | tee "$OUT/log.txt"
