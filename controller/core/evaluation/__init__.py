"""Quality gates: what a version is evaluated on (spec), the figures an evaluation gives and
the verdict they earn (verdict), and how both are recorded on the version (record). Pure."""
