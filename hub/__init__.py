"""JupyterHub side of Hubforge: configuration, authenticator, local spawner."""
