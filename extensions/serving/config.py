"""TF Serving's configuration files, read as TF Serving reads them (protobuf text format).

``--model_config_file`` is a ``ModelServerConfig`` (tensorflow-serving-api's own message):
several models, each with a version policy and version labels. ``--batching_parameters_file``
(``BatchingParameters``) and ``--monitoring_config_file`` (``MonitoringConfig``) are declared
here field for field as in TF Serving's .proto files (session_bundle_config.proto,
monitoring_config.proto), which the PyPI package does not ship.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .repository import VersionPolicy


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    base_path: str
    policy: VersionPolicy
    labels: dict[str, int] | None  # None: our own labels.json beside the versions


def _parse(text: str, message: Any, path: Path) -> Any:
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: {e}") from None


def read_model_config(path: str | Path) -> list[ModelSpec]:
    """The models of a ``--model_config_file``; ConfigError on anything TF Serving refuses."""
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"Cannot read the model config file {path}: {e.strerror}") from None
    config = _parse(text, model_server_config_pb2.ModelServerConfig(), path)
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: needs model_config_list {{ config {{ ... }} }}")
    specs, names = [], set()
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ConfigError(f"{path}: every config needs a name and a base_path")
        if model.name in names:
            raise ConfigError(f"{path}: model name {model.name} is given twice")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{path}: model {model.name} has model_platform {model.model_platform!r}; "
                "only tensorflow SavedModels are served"
            )
        names.add(model.name)
        specs.append(
            ModelSpec(
                model.name,
                model.base_path,
                _policy(model.model_version_policy, model.name, path),
                dict(model.version_labels) if model.version_labels else None,
            )
        )
    if not specs:
        raise ConfigError(f"{path}: no model in model_config_list")
    return specs


def _policy(policy: Any, name: str, path: Path) -> VersionPolicy:
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return VersionPolicy("all")
    if kind == "specific":
        if not policy.specific.versions:
            raise ConfigError(f"{path}: model {name} has a specific policy with no versions")
        return VersionPolicy("specific", versions=tuple(policy.specific.versions))
    number = policy.latest.num_versions if kind == "latest" else 1
    return VersionPolicy("latest", num_versions=max(number, 1))


def _messages() -> dict[str, Any]:
    """BatchingParameters and MonitoringConfig, built from their field lists."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="hubforge_tfserving_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    F = descriptor_pb2.FieldDescriptorProto
    fields = {
        "BatchingParameters": [
            ("max_batch_size", 1, ".google.protobuf.Int64Value"),
            ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
            ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
            ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
            ("thread_pool_name", 5, ".google.protobuf.StringValue"),
            ("allowed_batch_sizes", 6, F.TYPE_INT64),
            ("pad_variable_length_inputs", 7, F.TYPE_BOOL),
            ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
            ("max_execution_batch_size", 9, ".google.protobuf.Int64Value"),
        ],
        "PrometheusConfig": [("enable", 1, F.TYPE_BOOL), ("path", 2, F.TYPE_STRING)],
        "MonitoringConfig": [("prometheus_config", 1, ".tensorflow.serving.PrometheusConfig")],
    }
    for message, entries in fields.items():
        proto = file.message_type.add(name=message)
        for name, number, kind in entries:
            field = proto.field.add(name=name, number=number)
            field.label = F.LABEL_REPEATED if name == "allowed_batch_sizes" else F.LABEL_OPTIONAL
            if isinstance(kind, str):
                field.type, field.type_name = F.TYPE_MESSAGE, kind
            else:
                field.type = kind
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in fields
    }


def read_batching_parameters(path: str | Path) -> tuple[int, float]:
    """(max_batch_size, batch_timeout_ms) of a ``--batching_parameters_file``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(
            f"Cannot read the batching parameters file {path}: {e.strerror}"
        ) from None
    params = _parse(text, _messages()["BatchingParameters"](), path)
    size = params.max_batch_size.value if params.HasField("max_batch_size") else 1000
    timeout = params.batch_timeout_micros.value if params.HasField("batch_timeout_micros") else 0
    if size < 1 or timeout < 0:
        raise ConfigError(f"{path}: max_batch_size must be >= 1 and batch_timeout_micros >= 0")
    return size, timeout / 1000


def read_monitoring_config(path: str | Path) -> str | None:
    """The Prometheus metrics path of a ``--monitoring_config_file``, or None when disabled."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"Cannot read the monitoring config file {path}: {e.strerror}") from None
    config = _parse(text, _messages()["MonitoringConfig"](), path)
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    metrics_path = prometheus.path or "/monitoring/prometheus/metrics"
    if not metrics_path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config path must start with '/'")
    return metrics_path
