"""What a flood of unauthenticated requests costs on each front door, what devices see meanwhile, and what
CloudFront with AWS WAF in front would cost instead (README, "What a flood costs"; docs/CAPACITY.md).

    python -m tools.models.flood [--rps 1000]     # PROFILE/API_KIND as the stack resolves them

A flood here is requests without a valid credential, or to unknown paths, from anyone on the internet:

- **HTTP API** (``API_KIND=http``): it can have no AWS WAF and no usage plans ("Choose between REST APIs and HTTP
  APIs"); no authorizer is configured (devices authenticate in the ingest), so every flood request is a billed
  HTTP API request *and* a Lambda invocation that answers 401/404, until the stage throttle answers 429.
- **REST API** (``API_KIND=rest``): a request without the API key is refused by API Gateway (403) before the
  ingest runs; AWS WAF can be attached to the stage. The model does not count on AWS waiving refused requests:
  it prices them as billed, the upper bound (check the API Gateway pricing page for what is waived).
- **CloudFront + AWS WAF** in front (an operator's addition, not in this stack): a rate-based rule blocks a client
  address past its limit at the edge, so blocked requests never reach API Gateway; CloudFront bills the request
  and WAF its inspection.

Prices: tools/models/prices.py (us-east-1 list prices, first tiers: a flood is priced at the margin).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from infra.access_logs import access_log_line_bytes
from infra.config import PipelineConfig
from tools.models import cost, prices
from tools.models.assumptions import DEFAULT, MEASURED
from tools.models.capacity import resolve_config

MILLION: Final = 1_000_000
# Assumed: the ingest's refusal of a request without a device key (or to an unknown path) parses the headers and
# answers, with no network call; Lambda bills it in whole milliseconds.
REFUSED_INGEST_MS: Final = 2.0
# The flood rates the README and docs/CAPACITY.md print (the second is the account's default throttle).
FLOOD_RPS: Final = (1_000, 10_000)
HOUR_S: Final = 3600


@dataclass(frozen=True)
class FloodLine:
    service: str
    item: str
    usd_per_million: float
    reaches_origin: bool  # False: billed for every flood request, even those the stage throttle answers 429


@dataclass(frozen=True)
class FrontDoorFlood:
    name: str
    lines: tuple[FloodLine, ...]
    monthly_fixed_usd: float = 0.0

    @property
    def usd_per_million(self) -> float:
        return sum(line.usd_per_million for line in self.lines)

    def hour_usd(self, rps: float, stage_rps: float) -> float:
        """One hour of ``rps`` flood requests: what reaches the ingest is capped by the stage throttle
        (API Gateway answers the rest 429 before the integration)."""
        total = 0.0
        for line in self.lines:
            billed_rps = min(rps, stage_rps) if line.reaches_origin else rps
            total += line.usd_per_million * billed_rps * HOUR_S / MILLION
        return total


def _first_tier(tiers: Sequence[tuple[float | None, float]]) -> float:
    return tiers[0][1]


def _ingest_log_bytes(config: PipelineConfig) -> float:
    """CloudWatch Logs bytes of one refused request: the "request rejected" line and its metric (sized as the
    accepted request's, assumptions.MEASURED) at LOG_LEVEL INFO, and Lambda's START/END/REPORT unless
    SYSTEM_LOG_LEVEL=WARN."""
    event = prices.CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES
    total = float(MEASURED.ingest_emf_bytes + event) if not config.METRICS_FLUSH_SECONDS else 0.0
    if config.LOG_LEVEL in ("DEBUG", "INFO"):
        total += MEASURED.ingest_log_bytes - MEASURED.ingest_emf_bytes + event
    if config.SYSTEM_LOG_LEVEL != "WARN":
        total += DEFAULT.platform_log_bytes + event * DEFAULT.platform_log_lines
    return total


def _access_log_line(config: PipelineConfig, api_kind: str) -> FloodLine:
    client_ip = config.ACCESS_LOG_CLIENT_IP == "on"
    line_bytes = access_log_line_bytes(api_kind, client_ip) + 1 + prices.CLOUDWATCH_LOG_EVENT_OVERHEAD_BYTES
    per_gb = cost.ACCESS_LOG_PRICES[config.ACCESS_LOG_CLASS]
    return FloodLine(
        "CloudWatch", f"access log line ({config.ACCESS_LOG_CLASS})", line_bytes * MILLION / prices.GB * per_gb, False
    )


def http_api_flood(config: PipelineConfig) -> FrontDoorFlood:
    """API_KIND=http: every flood request is billed, and each one under the stage throttle invokes the ingest."""
    gb_seconds = cost.lambda_gb_seconds(MILLION, REFUSED_INGEST_MS, config.INGEST_MEMORY_MB)
    log_gb = _ingest_log_bytes(config) * MILLION / prices.GB
    duration = f"ingest duration, {REFUSED_INGEST_MS:.0f} ms at {config.INGEST_MEMORY_MB} MB"
    logs = f"ingest logs (LOG_LEVEL={config.LOG_LEVEL}, SYSTEM_LOG_LEVEL={config.SYSTEM_LOG_LEVEL})"
    lines = (
        FloodLine("API Gateway", "HTTP API request", MILLION * _first_tier(prices.API_GATEWAY_HTTP_TIERS), False),
        _access_log_line(config, "http"),
        FloodLine("Lambda", "ingest invocation (answers 401/404)", MILLION * prices.LAMBDA_REQUEST, True),
        FloodLine("Lambda", duration, gb_seconds * _first_tier(prices.LAMBDA_ARM64_GB_SECOND_TIERS), True),
        FloodLine("CloudWatch", logs, log_gb * _first_tier(prices.CLOUDWATCH_LAMBDA_LOGS_TIERS_PER_GB), True),
    )
    return FrontDoorFlood("HTTP API (API_KIND=http)", lines)


def rest_api_flood(config: PipelineConfig) -> FrontDoorFlood:
    """API_KIND=rest: API Gateway refuses a request without the API key (403) before the ingest runs."""
    per_million = MILLION * _first_tier(prices.API_GATEWAY_REST_TIERS)
    request = FloodLine("API Gateway", "REST API request (priced as billed)", per_million, False)
    return FrontDoorFlood("REST API (API_KIND=rest)", (request, _access_log_line(config, "rest")))


def cloudfront_waf_flood() -> FrontDoorFlood:
    """CloudFront with an AWS WAF web ACL holding one rate-based rule, in front of either front door: what a flood
    request blocked at the edge costs (it never reaches API Gateway)."""
    return FrontDoorFlood(
        "CloudFront + AWS WAF rate rule (blocked at the edge)",
        (
            FloodLine("CloudFront", "HTTPS request", MILLION * prices.CLOUDFRONT_HTTPS_REQUEST, False),
            FloodLine("AWS WAF", "request inspected", MILLION * prices.WAF_REQUEST, False),
        ),
        monthly_fixed_usd=prices.WAF_WEB_ACL_MONTH + prices.WAF_RULE_MONTH,
    )


def flood_options(config: PipelineConfig) -> list[FrontDoorFlood]:
    """The configured front door first, then the other, then CloudFront + WAF in front."""
    doors = [http_api_flood(config), rest_api_flood(config)]
    if config.API_KIND == "rest":
        doors.reverse()
    return [*doors, cloudfront_waf_flood()]


def device_headroom_rps(config: PipelineConfig, device_rps: float) -> float:
    """Flood requests/s the stage throttle takes beside ``device_rps`` before devices get 429 too: the throttle
    counts every request to the stage, from devices and flood alike (per stage and route, no per-client limit)."""
    return max(0.0, config.STAGE_THROTTLE_RATE_LIMIT - device_rps)


def _money(usd: float) -> str:
    return f"${usd:,.0f}" if abs(usd) >= 100 else f"${usd:,.2f}"


def flood_table(config: PipelineConfig) -> list[str]:
    """docs/CAPACITY.md's flood table for ``config``: per million flood requests, and an hour at each of
    FLOOD_RPS (the prose around it is in tools/models/capacity_doc.md.tmpl)."""
    stage = config.STAGE_THROTTLE_RATE_LIMIT
    hours = " | ".join(f"an hour at {rps:,} rps" for rps in FLOOD_RPS)
    out = [
        f"| front door | per million flood requests | {hours} | fixed per month |",
        "|---|---:|" + "---:|" * len(FLOOD_RPS) + "---:|",
    ]
    for door in flood_options(config):
        cells = " | ".join(_money(door.hour_usd(rps, stage)) for rps in FLOOD_RPS)
        out.append(f"| {door.name} | ${door.usd_per_million:.2f} | {cells} | {_money(door.monthly_fixed_usd)} |")
    return out


def render_text(config: PipelineConfig, rps: float) -> str:
    stage = config.STAGE_THROTTLE_RATE_LIMIT
    lines = [f"A flood of {rps:,.0f} unauthenticated requests/s (stage throttle {stage:,} rps), {prices.REGION}:"]
    for door in flood_options(config):
        lines.append(
            f"  {door.name}: ${door.usd_per_million:.2f} per million, {_money(door.hour_usd(rps, stage))} an hour"
        )
        lines += [f"    {line.service:<11} {line.item:<60} ${line.usd_per_million:.3f}/M" for line in door.lines]
        if door.monthly_fixed_usd:
            lines.append(f"    {'fixed':<11} {'web ACL and one rule, per month':<60} {_money(door.monthly_fixed_usd)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.models.flood", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rps", type=float, default=FLOOD_RPS[0], help="flood requests per second")
    args = parser.parse_args(argv)
    if not math.isfinite(args.rps) or args.rps <= 0:
        parser.error("--rps must be a positive number")
    print(render_text(resolve_config(), args.rps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
