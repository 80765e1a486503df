"""git: files changed since a revision, and that revision's tree."""
