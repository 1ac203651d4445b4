"""The verification pass: run a Caffe net and its Keras model side by side, blob by blob.

``verify(prototxt, caffemodel, keras_model=None, ...)`` feeds the same input to a reference Caffe
runtime (pycaffe when importable, else OpenCV dnn, or blobs stored from a real Caffe run) and to
the Keras model on the GPU when the Keras backend sees one, and compares every Caffe blob that
has a counterpart in the Keras model. It works in either direction: the Keras model may have been
converted from the Caffe files or the Caffe files exported from it, as long as the Keras layers
are named as :class:`~bnconvert.naming.NamePlan` names them.

Each blob is checked twice. The *layer* check feeds the Keras layers that make the blob with the
reference's own values of the blobs before them, so it measures what those layers alone get wrong
(rounding noise stays ~1e-7 however deep the net); the status and the first divergent layer come
from it. The *end-to-end* check runs the whole Keras model from the input, so its error includes
the float32 noise of every layer before (in a deep net, real Caffe and OpenCV differ from each
other by ~1e-4 relative there); it is reported for every blob and must be within tolerance for
the net's outputs.

One job per module:

- ``entry``: :func:`verify`, the pass itself;
- ``inputs``, ``image``: the input fed to both sides;
- ``references`` (dispatch, stored blobs), ``pycaffe``, ``opencv``, ``refnet``: the reference run;
- ``device``: where the Keras model runs;
- ``probes``: the Keras tensor of each Caffe blob, and running them;
- ``compare``: the rows of the table; ``result``: the result objects; ``html_report``: the page.
"""
from __future__ import annotations

from .compare import compare
from .device import DeviceChoice, select_device
from .entry import DEFAULT_ATOL, DEFAULT_RTOL, verify
from .html_report import render_html
from .image import IMAGE_EXTS, load_image
from .inputs import load_inputs
from .opencv import run_opencv
from .pycaffe import run_pycaffe
from .result import BlobCheck, VerifyResult

__all__ = ["BlobCheck", "VerifyResult", "DeviceChoice", "verify", "select_device", "load_inputs", "load_image",
           "compare", "render_html", "run_opencv", "run_pycaffe", "DEFAULT_RTOL", "DEFAULT_ATOL", "IMAGE_EXTS"]
