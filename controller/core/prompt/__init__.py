"""Prompts of MLflow's Prompt Registry: their content and digest, and agents' bindings. Pure."""
