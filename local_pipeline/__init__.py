"""Run the pipeline's real handlers on this machine (moto for AWS, no Docker)."""
