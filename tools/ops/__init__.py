"""Operator scripts that act on or read a deployment (or `make run`): preflight (make preflight), redrive
(make redrive), query (make query)."""
