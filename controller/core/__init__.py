"""controller/core"""
