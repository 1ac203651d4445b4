"""Import-time behaviour: light imports, and custom layers registered by `import bnconvert` alone."""
import subprocess
import sys
import textwrap

from helpers import ROOT


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_import_and_help_do_not_load_tensorflow():
    r = _run("""
        import sys, bnconvert, bnconvert.cli
        bnconvert.cli.build_parser()
        from bnconvert.registry import CAFFE_TO_KERAS; CAFFE_TO_KERAS.types()
        bad = [m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules]
        print("LOADED", bad)
    """)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout


def test_saved_model_loads_with_plain_keras_after_import_bnconvert(tmp_path):
    src = ROOT / "sample_models" / "mini_resnet"
    out = tmp_path / "m.keras"
    r = _run(f"""
        import bnconvert, numpy as np
        m = bnconvert.caffe_to_keras({str(src / 'deploy.prototxt')!r}, {str(src / 'weights.caffemodel')!r})
        m.save({str(out)!r})
        x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
        np.save({str(tmp_path / 'x.npy')!r}, x); np.save({str(tmp_path / 'y.npy')!r}, np.asarray(m(x)))
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    # keras first, then bnconvert: the registration must still happen
    for order in ("import keras, bnconvert", "import bnconvert, keras"):
        r = _run(f"""
            {order}
            import numpy as np
            m = keras.saving.load_model({str(out)!r}, safe_mode=True)
            x = np.load({str(tmp_path / 'x.npy')!r}); y = np.load({str(tmp_path / 'y.npy')!r})
            print("MAXDIFF", float(np.abs(np.asarray(m(x)) - y).max()))
        """)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "MAXDIFF 0.0" in r.stdout, r.stdout


def test_layers_registered_after_a_keras_lookup():
    """A look-up of keras (find_spec, as the backend check does) must not disarm the import hook."""
    import subprocess
    import sys

    script = ("import importlib.util, bnconvert; importlib.util.find_spec('keras'); import keras; "
              "print(keras.saving.get_registered_object('bnconvert>CaffePooling2D') is not None)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]
