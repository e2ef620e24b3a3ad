"""tools/models/flood.py: what an unauthenticated flood costs on each front door, and docs/FRONT_DOOR.md's figures,
which must be the tool's (issue 26.9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.models import flood, prices
from tools.models.capacity import SEED, resolve_config
from tools.models.flow import load_of

FRONT_DOOR = Path(__file__).resolve().parents[2] / "docs" / "FRONT_DOOR.md"
SCALE = resolve_config({"PROFILE": "scale"})


def _door(name_start: str) -> flood.FrontDoorFlood:
    return next(door for door in flood.flood_options(SCALE) if door.name.startswith(name_start))


def test_on_the_http_api_every_flood_request_under_the_throttle_invokes_the_ingest() -> None:
    # Given the scale profile's HTTP API
    http = _door("HTTP API")

    # Then a flood request pays API Gateway and a Lambda invocation; REST's refusal invokes nothing
    services = {line.service for line in http.lines}
    assert {"API Gateway", "Lambda"} <= services
    assert "Lambda" not in {line.service for line in _door("REST API").lines}
    assert http.usd_per_million >= 1.00 + 0.20  # $1.00 per million HTTP API requests + $0.20 per million invocations


def test_the_stage_throttle_caps_what_reaches_the_ingest_but_not_what_api_gateway_bills() -> None:
    # Given a flood far above the stage throttle
    http, stage = _door("HTTP API"), SCALE.STAGE_THROTTLE_RATE_LIMIT

    # When an hour of it is priced at twice and at four times the throttle
    twice, four_times = http.hour_usd(2 * stage, stage), http.hour_usd(4 * stage, stage)

    # Then only the API Gateway and access-log lines grow: the ingest's lines stay at the throttle's rate
    billed_always = sum(line.usd_per_million for line in http.lines if not line.reaches_origin)
    assert abs((four_times - twice) - billed_always * 2 * stage * 3600 / 1e6) < 1e-6


def test_cloudfront_and_waf_price_a_blocked_request_and_a_fixed_monthly_fee() -> None:
    # Given the CloudFront + WAF option, Then a blocked request costs CloudFront's HTTPS request and WAF's
    # inspection, and the web ACL with its one rule is a monthly fee
    edge = _door("CloudFront")
    assert edge.usd_per_million == pytest.approx((prices.CLOUDFRONT_HTTPS_REQUEST + prices.WAF_REQUEST) * 1e6)
    assert edge.monthly_fixed_usd == prices.WAF_WEB_ACL_MONTH + prices.WAF_RULE_MONTH == 6.00


def test_devices_share_the_stage_throttle_with_the_flood() -> None:
    # Given the seed load's devices on the scale profile, Then the flood the throttle takes beside them is what is left
    rps = load_of(*SEED).rps
    assert flood.device_headroom_rps(SCALE, rps) == SCALE.STAGE_THROTTLE_RATE_LIMIT - rps
    assert flood.device_headroom_rps(SCALE, SCALE.STAGE_THROTTLE_RATE_LIMIT * 2) == 0


def test_the_readmes_flood_figures_are_the_tools() -> None:
    # Given the front door page's flood paragraph and table (its last section)
    text = FRONT_DOOR.read_text()
    section = text[text.index("**What a flood costs.**") :]
    stage, big = SCALE.STAGE_THROTTLE_RATE_LIMIT, flood.FLOOD_RPS[1]

    # Then every figure in it is what the model prints for PROFILE=scale
    expected = {
        "HTTP API, as deployed": _door("HTTP API"),
        "REST API": _door("REST API"),
        "CloudFront + AWS WAF": _door("CloudFront"),
    }
    for row_start, door in expected.items():
        [row] = [line for line in section.splitlines() if line.startswith(f"| {row_start}")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1].startswith(f"${door.usd_per_million:.2f}"), row
        assert cells[2] == flood._money(door.hour_usd(big, stage)), row
    assert f"(+ {flood._money(_door('CloudFront').monthly_fixed_usd)} a month)" in section
    assert f"an hour at {big:,} requests/s" in section
    headroom = flood.device_headroom_rps(SCALE, load_of(*SEED).rps)
    assert f"a flood above {headroom:,.0f} requests/s makes" in section
    assert f"`STAGE_THROTTLE_RATE_LIMIT={stage:,}`" in section
    assert re.search(r"\(16,667 devices' requests/s", section) and f"{load_of(*SEED).rps:,.0f}" == "16,667"
