"""Environments: one desired state per stage of the promotion path (overlay), and what a
version must pass to move from one stage to the next (promotion). Pure data: no I/O."""
