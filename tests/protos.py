"""TensorFlow's and TF Serving's own messages, imported when a test first reads one.

Importing any of them runs ``tensorflow/__init__`` (~5 CPU-s on these machines), and every
test process imports every test module while it collects the suite: at module level in a
test file, each of the three processes paid it whether or not it ran those tests.
``protos.types_pb2`` is the module ``tensorflow.core.framework.types_pb2``, and so on."""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = {
    "example_pb2": "tensorflow.core.example.example_pb2",
    "types_pb2": "tensorflow.core.framework.types_pb2",
    "meta_graph_pb2": "tensorflow.core.protobuf.meta_graph_pb2",
    "get_model_metadata_pb2": "tensorflow_serving.apis.get_model_metadata_pb2",
    "get_model_status_pb2": "tensorflow_serving.apis.get_model_status_pb2",
    "model_pb2": "tensorflow_serving.apis.model_pb2",
    "model_server_config_pb2": "tensorflow_serving.config.model_server_config_pb2",
}


def __getattr__(name: str) -> ModuleType:
    if name not in MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(MODULES[name])


def __dir__() -> list[str]:
    return sorted([*globals(), *MODULES])
