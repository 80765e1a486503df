"""Kubernetes: Deployments, Services and Gateway API HTTPRoutes; Events; Lease leader election."""
