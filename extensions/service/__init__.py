"""The hubforge service: the control plane at /services/hubforge/, run by JupyterHub."""
