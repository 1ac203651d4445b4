"""Caffe's schema (proto/caffe.proto) as Python message classes, in a descriptor pool of its own.

Every Caffe tool ships its own ``caffe_pb2`` (pycaffe, MMdnn, a user's copy), and each registers a
file with the package ``caffe`` in protobuf's process-wide default pool. Two of them in one process
clash ("duplicate symbol 'caffe.Phase'"). bnconvert therefore never touches the default pool: the
generated ``bnconvert/caffe_pb2.py`` holds only the serialized FileDescriptorProto, and
:func:`build_module` adds it to a private :class:`~google.protobuf.descriptor_pool.DescriptorPool`
and fills the module with what a protoc-generated module offers (message classes, enum wrappers,
top-level enum values, ``DESCRIPTOR``). The wire and text formats depend only on the schema, so
they are exactly those of the default-pool module. Only public protobuf APIs are used, available
since protobuf 4.22 (upb, C++ and pure-Python implementations alike).
"""
from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper


def build_module(serialized_file: bytes, namespace: dict) -> None:
    """Add ``serialized_file`` (a FileDescriptorProto) to a new private pool; fill ``namespace``.

    ``namespace`` is the generated module's ``globals()``; its ``__name__`` becomes the ``__module__``
    of every message class, so messages pickle and print as ``bnconvert.caffe_pb2.NetParameter``.
    """
    pool = descriptor_pool.DescriptorPool()
    file = pool.AddSerializedFile(serialized_file)
    module = namespace["__name__"]
    namespace["DESCRIPTOR"] = file
    for name, desc in file.message_types_by_name.items():
        namespace[name] = _message_class(desc, module)
    for name, desc in file.enum_types_by_name.items():
        namespace[name] = enum_type_wrapper.EnumTypeWrapper(desc)
        for value in desc.values:
            namespace[value.name] = value.number


def _message_class(desc, module):
    cls = message_factory.GetMessageClass(desc)
    cls.__module__ = module
    for nested in desc.nested_types:  # nested classes are attributes of their parent, as in protoc's code
        sub = _message_class(nested, module)
        sub.__qualname__ = f"{cls.__qualname__}.{nested.name}"
        setattr(cls, nested.name, sub)
    return cls

