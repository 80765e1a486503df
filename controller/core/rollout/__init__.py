"""controller/core/rollout"""
