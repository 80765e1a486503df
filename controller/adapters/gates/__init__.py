"""controller/adapters/gates"""
