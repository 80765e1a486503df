"""The desired state's shape: manifest schema (Agent, ServingDefaults), semantic checks, the
loaded ``Desired`` value and the JSON Schema. Pure.
"""
