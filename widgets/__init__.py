"""ipywidgets views over the Hubforge engines (training, TensorBoard, deploy, labeling)."""

from .tensorboard import TensorBoardWidget, tensorboard
from .train import TrainWidget, train

__all__ = ["TensorBoardWidget", "TrainWidget", "tensorboard", "train"]
