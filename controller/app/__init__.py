"""controller/app"""
