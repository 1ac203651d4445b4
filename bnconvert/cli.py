"""The ``bnconvert`` command line. Subcommands live in ``bnconvert/commands/<name>.py``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Errors are printed as one line on stderr with exit code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys

from .errors import ConversionError

COMMANDS = ["caffe2keras", "keras2caffe", "verify", "inspect", "lint", "upgrade"]
# Commands that load TensorFlow, whose C++ runtime writes start-up chatter straight to fd 2.
NATIVE_NOISY = {"caffe2keras", "keras2caffe", "verify"}


@contextlib.contextmanager
def _native_stderr_silenced():
    """Send native (C/C++) writes to fd 2 to /dev/null while keeping Python's sys.stderr visible.

    TensorFlow and absl print start-up lines ("All log messages before absl::InitializeLog()",
    CUDA probing) that TF_CPP_MIN_LOG_LEVEL does not stop. Everything is restored on exit; when
    sys.stderr is not the process's fd 2 (e.g. captured by a test), nothing is changed.
    """
    try:
        if sys.stderr.fileno() != 2:
            raise ValueError
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        yield
        return
    saved_stderr = sys.stderr
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding=saved_stderr.encoding or "utf-8",
                           errors="backslashreplace")
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = saved_stderr
        os.dup2(real, 2)
        os.close(real)


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="bnconvert",
        description="Caffe <-> Keras/TensorFlow model converter that gets BatchNorm right.",
    )
    parser.add_argument("--version", action="version", version=f"bnconvert {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"bnconvert.commands.{name.replace('2', '_to_')}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("bnconvert.commands"):
                continue
            raise
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show Python tracebacks on errors")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False)
    quiet_native = not debug and args.command in NATIVE_NOISY
    try:
        if args.command in NATIVE_NOISY:  # these import Keras: start it on an installed backend
            from .backend import ensure_backend

            ensure_backend()
        with _native_stderr_silenced() if quiet_native else contextlib.nullcontext():
            return int(args._run(args) or 0)
    except ConversionError as e:
        if debug:
            raise
        print(f"bnconvert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bnconvert: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as e:  # an unexpected failure still gets one line, not a traceback
        if debug:
            raise
        print(f"bnconvert {args.command}: internal error: {type(e).__name__}: {e} "
              f"(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return 2


def parse_shape(text):
    """'N,C,H,W' -> tuple of ints."""
    try:
        dims = tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    except ValueError:
        raise ConversionError(f"invalid shape {text!r}: expected comma-separated integers like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise ConversionError(f"invalid shape {text!r}: every dimension must be a positive integer")
    return dims


def parse_input_shapes(items):
    """['data=1,3,224,224', ...] or ['1,3,224,224'] -> {name or None: shape}."""
    out = {}
    for item in items or []:
        if "=" in item:
            name, _, shape = item.partition("=")
            out[name.strip()] = parse_shape(shape)
        else:
            out[None] = parse_shape(item)
    return out


if __name__ == "__main__":
    sys.exit(main())
