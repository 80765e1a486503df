"""controller/adapters/mlflow"""
