"""Local serving's defaults, in a module of their own so that the CLI can name them without
importing the serving client."""

__all__ = ["DEFAULT_ROUTER_PORT"]

#: The local router's port on 127.0.0.1 when none is given.
DEFAULT_ROUTER_PORT = 8765
