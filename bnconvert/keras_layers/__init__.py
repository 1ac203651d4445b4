"""Keras layers for Caffe operations that have no exact built-in Keras equivalent.

Every layer is registered for serialization under the package name "bnconvert", so a converted
model loads with ``keras.saving.load_model(path)`` (safe mode included) after ``import bnconvert``.
All layers work on channels_last tensors as the converter lays them out. One family a module;
importing this package registers them all.
"""
from __future__ import annotations

from ._common import PACKAGE, caffe_pool_geometry
from .pooling import CaffePooling2D, CaffeMaxPoolArgmax2D
from .normalization import CaffeLRN, CaffeMVN, CaffeNormalize
from .elementwise import CaffeUnary, CaffeScale, BroadcastTo, CaffeEltwise
from .shape import CaffeSlice, CaffeCrop, ShuffleChannel, CaffeTile
from .reduce import CaffeReduce
from .resize import CaffeInterp, CaffeMaxUnpool2D
from .detection import CaffePriorBox, CaffeDetectionOutput, detection_model, caffe_detections

__all__ = ["PACKAGE", "caffe_pool_geometry", "CaffePooling2D", "CaffeLRN", "CaffeMVN", "CaffeNormalize", "CaffeUnary",
           "CaffeScale", "BroadcastTo", "CaffeEltwise", "CaffeSlice", "CaffeCrop", "ShuffleChannel", "CaffeTile",
           "CaffeReduce", "CaffeMaxPoolArgmax2D", "CaffeInterp", "CaffeMaxUnpool2D",
           "CaffePriorBox", "CaffeDetectionOutput", "detection_model", "caffe_detections"]
