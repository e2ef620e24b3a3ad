"""The front doors a stack can have (config.API_KIND): a REST API or an HTTP API.

A module of its own, below both modules that need the names: infra.config checks the knob against them and
infra.access_logs keeps one log format per kind (and builds its log group from the config)."""

from __future__ import annotations

from typing import Final

API_KINDS: Final = ("rest", "http")  # config.API_KIND's choices
