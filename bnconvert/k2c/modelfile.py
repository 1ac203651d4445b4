"""Checks on a Keras model file made before Keras reads it, and Keras's loading errors made readable.

- A ``.keras`` file is a zip: the uncompressed sizes its directory declares are checked (each
  member, their total, and the compression ratio) before anything is inflated, so a zip bomb
  is refused from a few kilobytes of directory. Python's zipfile never inflates a member past
  its declared size, so the declared sizes bound what loading can allocate.
- The layer count in the model's config bounds the depth of Keras's recursive graph walks
  (see :mod:`bnconvert.recursion`).
- Weights that do not fit a layer (a missing variable, a wrong shape) become one line that
  names the layer, the weight and both shapes.
No Keras import.
"""
from __future__ import annotations

import re
import zipfile

from ..errors import ParseError

# Limits on what a .keras zip may declare (documented in README, "Robustness").
MAX_CONFIG_BYTES = 256 << 20  # config.json / metadata.json: a 10^5-layer config is ~100 MB
MAX_MEMBER_BYTES = 16 << 30  # the weights file of the largest public models is a few GB
MAX_TOTAL_BYTES = 32 << 30
MAX_RATIO = 200  # uncompressed / compressed for a member over RATIO_FLOOR; JSON deflates ~10-20x
RATIO_FLOOR = 8 << 20
_SMALL_MEMBERS = ("config.json", "metadata.json")


def check_keras_archive(path):
    """Refuse a .keras zip whose declared sizes are absurd; returns the layer count of its config
    (0 when it is not a zip: Keras then reports the problem itself)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        return 0
    with zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            _check_member(info, path)
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise ParseError(f"the .keras zip declares {total:,} bytes uncompressed in all, over bnconvert's limit "
                             f"of {MAX_TOTAL_BYTES:,} (a zip bomb or a corrupted file?)", file=path)
        names = {i.filename: i for i in infos}
        if "config.json" not in names:
            return 0
        try:
            return zf.read("config.json").count(b'"class_name"')
        except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError):
            return 0  # Keras reports the broken member itself


def _check_member(info, path):
    limit = MAX_CONFIG_BYTES if info.filename in _SMALL_MEMBERS else MAX_MEMBER_BYTES
    if info.file_size > limit:
        raise ParseError(f"the .keras zip member {info.filename!r} declares {info.file_size:,} bytes uncompressed, "
                         f"over bnconvert's limit of {limit:,} (a zip bomb or a corrupted file?)", file=path)
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ParseError(f"the .keras zip member {info.filename!r} inflates {info.compress_size:,} bytes to "
                         f"{info.file_size:,} (over {MAX_RATIO}x: a zip bomb?)", file=path)


def h5_layer_count(path):
    """The layer count in a legacy .h5 model's config (0 when it cannot be read)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            cfg = f.attrs.get("model_config")
    except Exception:  # noqa: BLE001 - not readable here: Keras reports it
        return 0
    if isinstance(cfg, bytes):
        cfg = cfg.decode("utf-8", "replace")
    return cfg.count('"class_name"') if isinstance(cfg, str) else 0


_OBJECT = re.compile(r"<(\w+) name=([^,>]+)")
_SHAPES = re.compile(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))")
_PATH = re.compile(r"<Variable path=([^,>]+)")
_COUNT = re.compile(r"Layer '([^']+)' expected (\d+) variables, but received (\d+) variables during loading\."
                    r"(?: Expected: (\[[^\]]*\]))?")
_TOTAL = re.compile(r"A total of (\d+) objects could not be loaded")


def weights_mismatch(message, path):
    """The ParseError for Keras's "objects could not be loaded" message, or None for other messages."""
    total = _TOTAL.search(message)
    obj = _OBJECT.search(message)
    if not total or not obj:
        return None
    cls, name = obj.group(1), obj.group(2)
    more = int(total.group(1)) - 1
    tail = f" ({more} more layer(s) fail to load too)" if more > 0 else ""
    shapes, count = _SHAPES.search(message), _COUNT.search(message)
    if shapes:
        var = _PATH.search(message)
        which = f"weight '{var.group(1)}'" if var else "a weight"
        msg = f"{which} has shape {shapes.group(2)} in the file but the layer needs {shapes.group(1)}"
    elif count:
        names = f" {count.group(4)}" if count.group(4) else ""
        msg = f"the layer needs {count.group(2)} weight(s){names} but the file holds {count.group(3)}"
    else:
        detail = [ln.strip() for ln in message.splitlines()[1:] if ln.strip() and not ln.startswith("List of")]
        msg = f"its weights do not fit the layer: {detail[0][:200] if detail else 'no detail from Keras'}"
    return ParseError(msg + tail, file=path, layer=name, layer_type=cls,
                      hint="the weights file does not belong to this model's config; save the model again")
