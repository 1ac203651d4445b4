"""Where the Keras model runs during verify (GPU when the backend sees one), and how arrays get there."""
from __future__ import annotations

import contextlib

from ..errors import VerificationError


def backend_name():
    """The Keras backend in use, read without importing TensorFlow under JAX."""
    import keras

    return keras.config.backend()


class DeviceChoice:
    """Where the Keras model runs, and the precision switches that go with it."""

    def __init__(self, backend, handle, name, kind, is_gpu):
        self.backend, self.handle, self.name, self.kind, self.is_gpu = backend, handle, name, kind, is_gpu

    def tf32_state(self, tf32):
        if not self.is_gpu:
            return "n/a (CPU)"
        if self.backend == "jax":
            return "on (JAX default matmul precision)" if tf32 else "off (jax_default_matmul_precision=highest)"
        return "on (TensorFlow default)" if tf32 else "off (disabled for the check)"

    @contextlib.contextmanager
    def scope(self, tf32=False):
        """Run the enclosed conversion and forward pass on this device, TF32 off on GPUs unless asked."""
        if self.backend == "jax":
            import jax

            prev = jax.config.jax_default_matmul_precision
            if self.is_gpu and not tf32:
                jax.config.update("jax_default_matmul_precision", "highest")
            try:
                with jax.default_device(self.handle):
                    yield
            finally:
                jax.config.update("jax_default_matmul_precision", prev)
            return
        import tensorflow as tf

        prev = tf.config.experimental.tensor_float_32_execution_enabled()
        if self.is_gpu:
            tf.config.experimental.enable_tensor_float_32_execution(bool(tf32))
        try:
            with tf.device(self.name):
                yield
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(prev)


def select_device(device="auto", backend=None):
    """The device for ``device`` ("auto", "gpu", "cpu") under the Keras ``backend``."""
    if device not in ("auto", "gpu", "cpu"):
        raise VerificationError(f"device must be auto, gpu or cpu. Received: {device!r}")
    backend = backend or backend_name()
    if backend == "jax":
        import jax

        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        _need_gpu(device, gpus, "JAX")
        d = gpus[0] if gpus and device != "cpu" else jax.devices("cpu")[0]
        return DeviceChoice(backend, d, f"{d.platform}:{d.id}", getattr(d, "device_kind", d.platform),
                            d.platform != "cpu")
    if backend != "tensorflow":
        raise VerificationError(f"verify runs the Keras model with the TensorFlow or JAX backend; this Keras uses "
                                f"'{backend}'", hint="set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    _need_gpu(device, gpus, "TensorFlow")
    d = gpus[0] if gpus and device != "cpu" else tf.config.list_logical_devices("CPU")[0]
    return DeviceChoice(backend, d, d.name, _tf_kind(tf, d), d.device_type == "GPU")


def _need_gpu(device, gpus, who):
    if device == "gpu" and not gpus:
        raise VerificationError(f"--device gpu: {who} sees no GPU on this machine",
                                hint="use --device auto or --device cpu, or check the CUDA installation")


def _tf_kind(tf, logical):
    if logical.device_type != "GPU":
        return "CPU"
    try:
        phys = tf.config.list_physical_devices("GPU")[int(logical.name.rsplit(":", 1)[1])]
        return tf.config.experimental.get_device_details(phys).get("device_name", "GPU")
    except (IndexError, ValueError, RuntimeError):
        return "GPU"


def to_device(arr, dev, backend):
    """A numpy array as a tensor placed on ``dev``."""
    if backend == "jax":
        import jax

        return jax.device_put(arr, dev.handle)
    import tensorflow as tf

    with tf.device(dev.name):
        return tf.identity(tf.constant(arr))


def where(out, dev, backend):
    """A description of the device an output tensor lives on."""
    try:
        if backend == "jax":
            d = next(iter(out.devices()))
            return f"{d.platform}:{d.id} ({getattr(d, 'device_kind', d.platform)})"
        return f"{out.device} ({dev.kind})"
    except (AttributeError, StopIteration):
        return f"{dev.name} ({dev.kind})"
