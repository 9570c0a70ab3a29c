"""JupyterHub configuration of the local Hubforge workbench (see hubforge.hub.config)."""

from hubforge.hub.config import configure

configure(c)  # noqa: F821 - `c` is provided by JupyterHub
