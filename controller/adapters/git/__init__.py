"""controller/adapters/git"""
