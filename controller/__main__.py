"""``python -m controller``: the agentctl command."""

from controller.app.cli import main

main()
