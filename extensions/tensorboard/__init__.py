"""TensorBoard inside the workbench: one instance per log dir, served through
jupyter-server-proxy under the user's server, so it works behind the hub."""

from .api import TensorBoard, TensorBoardError, get, list_instances, open, stop

list = list_instances

__all__ = ["TensorBoard", "TensorBoardError", "get", "list", "list_instances", "open", "stop"]
