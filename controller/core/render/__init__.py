"""controller/core/render"""
