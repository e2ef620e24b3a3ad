"""Run from the repository root as ``python -m tools.<group>.<name>``.

- ``tools.ops``: scripts that act on or read a deployment: preflight, redrive, query.
- ``tools.models``: models that compute, touching no AWS account: cost, prices, capacity.
"""
