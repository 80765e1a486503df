"""Local serving: model servers, their supervisor and a traffic router on 127.0.0.1.

:class:`LocalServing` (the client) is what ``--target local`` uses; the daemon it starts lives in
:mod:`controller.adapters.local.daemon`.
"""

from controller.adapters.local.client import DEFAULT_ROUTER_PORT, LocalServing

__all__ = ["DEFAULT_ROUTER_PORT", "LocalServing"]
