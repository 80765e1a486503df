"""controller/adapters/kubernetes"""
