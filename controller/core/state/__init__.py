"""controller/core/state"""
