"""Send NDJSON from a shell: ``python -m ingest_client send --endpoint URL ... < events.ndjson``.

Each non-blank line is one payload (a JSON object). Exit status: 0 only when every payload read
was acknowledged (202); 1 when some were not (an invalid line, a rejected batch, or payloads still
spooled when --timeout ran out: the next run with the same --spool-dir delivers those); 2 for a
usage error or a spool that another process holds; 128+N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Optional, TextIO

from ingest_client.client import Client
from ingest_client.errors import IngestClientError, SpoolFullError
from ingest_client.limits import MAX_BODY_BYTES, MAX_PAYLOAD_BYTES, MAX_PAYLOADS, Limits

# How long a SIGTERM/SIGINT still lets acknowledgements arrive (a service manager's stop timeout is
# usually 10 s or more).
SIGNAL_FLUSH_SECONDS = 5.0


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def default_spool_dir(endpoint: str, token: str) -> Path:
    """One spool per endpoint and token under the user's cache directory, so a run that timed out
    is finished by the next run that sends to the same place."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(f"{endpoint}\n{token}".encode()).hexdigest()[:16]
    return cache / "ingest-client" / digest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingest_client", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser(
        "send", help="send NDJSON payloads from standard input; exit 0 when all are acknowledged"
    )
    send.add_argument("--endpoint", required=True, help="the payloads URL, e.g. https://.../v1/payloads")
    send.add_argument("--version", required=True, dest="payload_version", help="the collection's version field")
    send.add_argument("--token", required=True, help="the collection's token field (identifies the device)")
    send.add_argument(
        "--api-key", default=os.environ.get("INGEST_API_KEY"), help="x-api-key (default: $INGEST_API_KEY)"
    )
    send.add_argument(
        "--device-key",
        default=os.environ.get("INGEST_DEVICE_KEY"),
        help="sent as Authorization: Bearer (default: $INGEST_DEVICE_KEY)",
    )
    send.add_argument("--spool-dir", type=Path, help="default: ~/.cache/ingest-client/<endpoint and token hash>")
    send.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for acknowledgements after the input ends (default: %(default)g); payloads not "
        "acknowledged by then stay in the spool (--spool-dir), the run exits 1, and the next run with the same "
        "spool delivers them",
    )
    send.add_argument("--no-gzip", action="store_true", help="send bodies uncompressed")
    send.add_argument("--max-payloads", type=int, default=MAX_PAYLOADS)
    send.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    send.add_argument("--max-payload-bytes", type=int, default=MAX_PAYLOAD_BYTES)
    send.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)")
    return parser


def _strict_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("an object key appears more than once (the server refuses duplicate keys)")
    return document


def _send_lines(client: Client, lines: TextIO, state: dict[str, int]) -> int:
    """Send every line; return the number of invalid lines (each reported on stderr)."""
    invalid = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line, object_pairs_hook=_strict_object)
            state["sending"] = 1
            try:
                client.send(payload)
            finally:
                state["sending"] = 0
            if state["stopped"]:
                raise _Stopped(state["stopped"])
        except ValueError as exc:
            invalid += 1
            print(f"line {number}: not sent: {exc}", file=sys.stderr)
            continue
        state["read"] += 1
    return invalid


def main(argv: Optional[list[str]] = None, stdin: Optional[TextIO] = None) -> int:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(arguments.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    spool_dir = arguments.spool_dir or default_spool_dir(arguments.endpoint, arguments.token)
    try:
        client = Client(
            arguments.endpoint,
            version=arguments.payload_version,
            token=arguments.token,
            spool_dir=spool_dir,
            api_key=arguments.api_key,
            device_key=arguments.device_key,
            gzip=not arguments.no_gzip,
            limits=Limits(arguments.max_payloads, arguments.max_body_bytes, arguments.max_payload_bytes),
        )
    except (ValueError, IngestClientError) as exc:
        print(f"ingest-client: {exc}", file=sys.stderr)
        return 2
    # A signal while reading stops the reading; while send() writes, it waits for send() to return.
    state = {"read": 0, "sending": 0, "stopped": 0}

    def stop(signum: int, _frame: Optional[FrameType]) -> None:
        state["stopped"] = signum
        if not state["sending"]:
            raise _Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    invalid = 0
    stopped = 0
    try:
        invalid = _send_lines(client, stdin or sys.stdin, state)
    except _Stopped as exc:
        stopped = exc.signum
    except SpoolFullError as exc:
        print(f"ingest-client: {exc}", file=sys.stderr)
        stopped = -1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    delivered = client.close(min(arguments.timeout, SIGNAL_FLUSH_SECONDS) if stopped > 0 else arguments.timeout)
    stats = client.stats()
    print(
        f"ingest-client: {state['read']} payloads read, {stats.acknowledged} acknowledged, {stats.rejected} rejected"
        + (f" (kept in {spool_dir / 'rejected'})" if stats.rejected else "")
        + f", {stats.spooled} left in {spool_dir}"
        + (f", {invalid} invalid lines" if invalid else "")
        + (f"; stopped by {signal.Signals(stopped).name}" if stopped > 0 else ""),
        file=sys.stderr,
    )
    if stopped > 0:
        return 128 + stopped
    return 0 if delivered and not invalid and stopped == 0 else 1
