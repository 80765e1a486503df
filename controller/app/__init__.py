"""The shells: the ``agentctl`` CLI, the controller process, and the composition root (wiring)
that builds every adapter from one ``Options`` value.
"""
