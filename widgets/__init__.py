"""ipywidgets views over the Hubforge engines (training, TensorBoard, deploy, labeling)."""

from .train import TrainWidget, train

__all__ = ["TrainWidget", "train"]
