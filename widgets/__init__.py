"""ipywidgets views over the Hubforge engines (training, TensorBoard, deploy, labeling)."""

from .deploy import DeployWidget, deploy
from .tensorboard import TensorBoardWidget, tensorboard
from .train import TrainWidget, train

__all__ = ["DeployWidget", "TensorBoardWidget", "TrainWidget", "deploy", "tensorboard", "train"]
