"""A program that sends payloads {"seq": n} through ingest_client and prints "sent n" after each
send() returned: the tests kill it (SIGKILL, SIGTERM) and compare what it said with what arrived.

    python producer.py URL SPOOL_DIR COUNT [--pace SECONDS] [--api-key KEY] [--exit-on-sigterm]
    python producer.py URL SPOOL_DIR 0 --deliver TIMEOUT     # send nothing, deliver what is spooled
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from ingest_client import Client


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("spool_dir")
    parser.add_argument("count", type=int)
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between sends")
    parser.add_argument("--api-key")
    parser.add_argument("--token", default="producer", help="the collection's token (tells tests' payloads apart)")
    parser.add_argument("--deliver", type=float, default=0.0, help="flush for this long, then exit")
    parser.add_argument("--exit-on-sigterm", action="store_true", help="SIGTERM -> sys.exit (atexit flushes)")
    parser.add_argument("--max-payloads", type=int, default=0)
    arguments = parser.parse_args()
    if arguments.exit_on_sigterm:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options: dict[str, Any] = {}
    if arguments.max_payloads:
        from ingest_client import Limits

        options["limits"] = Limits(max_payloads=arguments.max_payloads)
    client = Client(
        arguments.url,
        version="1.0",
        token=arguments.token,
        spool_dir=arguments.spool_dir,
        api_key=arguments.api_key,
        linger=0.05,
        exit_timeout=10,
        **options,
    )
    for seq in range(arguments.count):
        client.send({"seq": seq})
        print(f"sent {seq}", flush=True)
        if arguments.pace:
            time.sleep(arguments.pace)
    if arguments.deliver:
        delivered = client.flush(arguments.deliver)
        print(f"delivered {delivered}", flush=True)
        return 0 if delivered else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
