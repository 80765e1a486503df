"""MLflow: the Model Registry over REST or the MLflow client, and the model logger."""
