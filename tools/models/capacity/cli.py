"""The command line of the capacity model: ``python -m tools.models.capacity`` (tools/models/capacity/__main__.py
runs ``main``). The top of tools.models: it renders the model (tools.models.capacity) as text or JSON and
docs/CAPACITY.md (tools.models.capacity_doc), so neither of those imports the other's caller."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping

from infra.config import ConfigError
from pipeline.problems import Problem
from tools.models import capacity, capacity_doc, cost
from tools.models.capacity import assess, render_json, render_text, resolve_config
from tools.models.flow import MIN_PAYLOAD_BYTES, load_of


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.models.capacity", description=(capacity.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--rpm", type=float, help="HTTP requests per minute")
    parser.add_argument("--payloads", type=int, default=10, help="payloads per request")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="bytes of one payload (compact JSON)")
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.0,
        help="share of records that fail once and wait out their first retry delay (0..1)",
    )
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    parser.add_argument("--markdown", action="store_true", help="the same as --format markdown (docs/CAPACITY.md)")
    cost.add_assumption_flags(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own errors (exit 2) and --help (exit 0)
        return int(exc.code or 0)
    if args.markdown or args.format == "markdown":
        print(capacity_doc.render_markdown(), end="")
        return 0
    if (
        args.rpm is None
        or not 0 < args.rpm < math.inf
        or args.payloads < 1
        or args.payload_bytes < MIN_PAYLOAD_BYTES
        or not 0 <= args.failure_rate < 1
    ):
        print(  # one line: the usage (15 lines) would bury it; --help prints it
            "capacity: --rpm > 0, --payloads >= 1, --payload-bytes >= 2 (a JSON object) and 0 <= --failure-rate < 1 "
            "are needed (--help lists the options)",
            file=sys.stderr,
        )
        return 2
    try:
        config = resolve_config(environ)
    except ConfigError as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        return 2
    try:
        assessment = assess(
            config, load_of(args.rpm, args.payloads, args.payload_bytes, args.failure_rate), cost.assumptions_from(args)
        )
    except Problem as exc:  # the ingest's own refusal of such a payload: a bad argument, not a load to judge
        print(f"capacity: --payload-bytes {args.payload_bytes}: {exc.detail} (the ingest answers 413)", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(render_json(assessment), indent=2))
    else:
        print(render_text(assessment))
    return assessment.exit_code
