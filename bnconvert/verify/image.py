"""Images as verify's input: read the way Caffe's data layer would feed them, never decoded blind.

The header is read first, so an image whose pixel count would exhaust memory when decoded (a
"decompression bomb": a few kilobytes of PNG that inflate to gigabytes) is refused before
OpenCV allocates anything.
"""
from __future__ import annotations

import struct

import numpy as np

from ..errors import VerificationError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_IMAGE_PIXELS = 1 << 27  # 134 M pixels: far beyond any net input, well below a memory exhaustion


def image_size(path):
    """(width, height) from the file header for PNG, JPEG, BMP, GIF and PNM; None for other formats."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", head[6:10])
        if head[:1] == b"P" and head[1:2] in b"123456":
            return _pnm_size(head + f.read(1024))
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            return _jpeg_size(f)
    return None


def _pnm_size(data):
    text = b" ".join(line.split(b"#")[0] for line in data[2:].splitlines())
    parts = text.split()
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f):
    for _ in range(10000):
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if marker in _SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return w, h
        f.seek(length - 2, 1)
    return None


def check_image_size(path, max_pixels=MAX_IMAGE_PIXELS):
    try:
        size = image_size(path)
    except (OSError, struct.error):
        size = None
    if size is not None and size[0] * size[1] > max_pixels:
        raise VerificationError(f"the image header says {size[0]}x{size[1]} pixels ({size[0] * size[1]:,}), over "
                                f"verify's limit of {max_pixels:,} (a decompression bomb, or a far larger image "
                                f"than any net input)", file=path, hint="resize the image first")


def load_image(net, path, mean=None, scale=None, channel_order=None, resize=None):
    """Read an image the way Caffe's data layer would feed it: 1,C,H,W float32.

    Pixels are resized to ``resize`` (default: the net's input H,W), put in ``channel_order``
    ("bgr", Caffe's and OpenCV's order, unless "rgb"), then ``(pixel - mean) * scale`` with
    mean/scale from the input's transform_param unless given.
    """
    import cv2

    bid = net.inputs[0]
    _, c, h, w = (list(net.shapes[bid]) + [1, 1, 1, 1])[:4]
    tr = net.transforms.get(bid) or {}
    check_image_size(path)
    try:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if c == 1 else cv2.IMREAD_COLOR)
    except cv2.error as e:
        from .opencv import cv_reason

        raise VerificationError(f"OpenCV cannot decode the image: {cv_reason(e)}", file=path) from None
    if img is None:
        raise VerificationError("cannot read the image (not an image, or a format OpenCV cannot decode)", file=path)
    if tr.get("mean_file") and mean is None:
        raise VerificationError(f"the input layer's transform_param uses mean_file {tr['mean_file']}, which verify "
                                f"does not read", file=path, hint="pass the per-channel mean with --mean B,G,R")
    rh, rw = resize or (h, w)
    img = cv2.resize(img, (int(rw), int(rh)), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    img = img.reshape(img.shape[0], img.shape[1], -1)
    if (channel_order or "bgr").lower() == "rgb":
        img = img[:, :, ::-1]
    m = mean if mean is not None else (tr.get("mean_value") or [0.0])
    m = np.asarray(m, np.float32).reshape(-1)
    if m.size not in (1, img.shape[2]):
        raise VerificationError(f"--mean has {m.size} values for an image of {img.shape[2]} channels", file=path)
    s = float(scale if scale is not None else (tr.get("scale") or 1.0))
    return ((img - m) * s).transpose(2, 0, 1)[None].copy()

