"""controller/core/manifest"""
