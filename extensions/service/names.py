"""The hubforge service's name in JupyterHub and the scope that calls endpoints: what the
hub's configuration, the data path and the handlers share, in a module that imports nothing
(the handlers bring JupyterHub's service auth and ORM, ~0.7 CPU-s that `hubforge up` and the
helper's service starts need not pay)."""

SERVICE_NAME = "hubforge"
# Calls an endpoint's TF Serving API. Filters: !user=<owner> (all of the owner's endpoints)
# or !server=<owner>/<endpoint> (one endpoint).
CALL_ENDPOINTS_SCOPE = "custom:hubforge:endpoints:call"
