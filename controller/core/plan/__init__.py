"""controller/core/plan"""
