"""The observed state: registry and serving snapshots, the ``agentctl.io/*`` tag names, source
digests. Pure.
"""
