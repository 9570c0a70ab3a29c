"""ipywidgets views over the Hubforge engines (training, TensorBoard, deploy, labeling)."""

from .deploy import DeployWidget, deploy
from .label import LabelWidget, label
from .tensorboard import TensorBoardWidget, tensorboard
from .train import TrainWidget, train

__all__ = [
    "DeployWidget",
    "LabelWidget",
    "TensorBoardWidget",
    "TrainWidget",
    "deploy",
    "label",
    "tensorboard",
    "train",
]
