"""controller/adapters/http"""
