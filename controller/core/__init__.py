"""The pure core: values and functions with no I/O and no clock (``now`` is passed in).
Imports only ``controller.core``, pure parts of the standard library, pydantic and packaging.
"""
