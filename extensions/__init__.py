"""Hubforge: a JupyterHub-based data-science workbench.

The import package ``hubforge`` holds the engines (jobs, serving, tensorboard, labeling),
the hubforge service, the service client and the Jupyter server extension.
"""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict]:
    from .app import HubforgeExtension

    return [{"module": "hubforge.app", "app": HubforgeExtension}]
