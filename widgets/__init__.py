"""ipywidgets views over the Hubforge engines (training, TensorBoard, deploy, labeling)."""
