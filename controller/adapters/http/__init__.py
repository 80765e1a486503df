"""The controller's HTTP endpoints (health, readiness, metrics) and MLflow webhook checks."""
