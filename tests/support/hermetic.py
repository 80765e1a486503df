"""The suite's own environment: none of the caller's agentctl, MLflow or Kubernetes settings.

A newcomer who exported ``AGENTCTL_RUN_DIR`` (as the README invites) or ``MLFLOW_TRACKING_URI``
must still get a green ``make test``, and the suite must never start or stop anything in their
run directory. tests/conftest.py calls :func:`scrub` before anything else is imported; every
fixture that starts agentctl then says which run directory, router port and server it uses.
"""

from __future__ import annotations

from collections.abc import MutableMapping

__all__ = ["TOOL_INPUTS", "scrub"]

#: Where the suite finds its tools (the Makefile passes the first three; hack/tools.sh reads the
#: last): inputs of the suite itself, not settings of agentctl. KUBEBUILDER_ASSETS is kept too.
TOOL_INPUTS = frozenset(
    {"AGENTCTL_KUBE_ASSETS", "AGENTCTL_GATEWAY_CRDS", "AGENTCTL_HELM", "AGENTCTL_TOOLS_CACHE"}
)


def scrub(environ: MutableMapping[str, str]) -> list[str]:
    """Remove every ``AGENTCTL_*`` (but the tool inputs), ``MLFLOW_*`` and ``KUBECONFIG``
    variable from ``environ``; return the names removed."""
    removed = [
        name
        for name in environ
        if (name.startswith(("AGENTCTL_", "MLFLOW_")) and name not in TOOL_INPUTS)
        or name == "KUBECONFIG"
    ]
    for name in removed:
        del environ[name]
    return sorted(removed)
