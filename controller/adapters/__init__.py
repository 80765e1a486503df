"""One package per outside system, each implementing ports; none imports another, nor the engine."""
