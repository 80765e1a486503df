"""Plans: ``Action``, ``Change`` and its typed payloads, ``Plan``; the planners (registry,
serving, Kubernetes objects); previews, change sets, scope. Pure.
"""
