"""P2: cold start. A fresh process that imports a handler and serves its first request, timed from
outside, for the real ingest handler and for the minimal boto3 handler (bench/baseline_handler.py).

Both sides go through the same harness:
* the code is staged as the deployed asset is (a copy of lambdas/ without bytecode, plus the
  baseline module), so a ``__pycache__`` left behind by the tests never flatters one side; a second
  copy is byte-compiled with ``compileall`` for the running interpreter (the
  stand-in for the asset compiled for Lambda's 3.13/3.14, which this 3.11 cannot load);
* a new interpreter per sample runs the same bootstrap: ``import <module>``, then one call of
  ``<module>.lambda_handler`` with the same API Gateway event (10 x 1 KiB) and a Lambda context;
* SendMessageBatch really goes over HTTP, to a local endpoint in this process that answers like SQS
  (``AWS_ENDPOINT_URL_SQS``), so botocore's client creation, signing, sending and parsing count;
* the children get Lambda's environment: the stack's variables, ``LAMBDA_TASK_ROOT`` and a sampled
  ``_X_AMZN_TRACE_ID`` (so the X-Ray SDK, when tracing is on, takes its in-Lambda path and emits).

Each sample is measured from outside the child: its CPU time (user + system, from the kernel's
accounting of the finished child) and its wall time, interpreter start-up included on both sides.
The figure is the ratio of the median CPU times: a cold start is one busy process, and on these two
shared cores the wall time also counts the other processes that preempt it (it is printed too; on a
quiet machine the two agree within a few percent).
Samples are interleaved in a rotating order so machine noise hits every side alike. Each child also
reports its own import and first-request times: the breakdown of where the difference is.

The ingest runs four ways: TRACING on and off (the X-Ray SDK is loaded only when on), each from the
asset without and with bytecode. P2 is the default configuration with the asset as infra/functions.py
ships it today; the other three say what each choice is worth.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import py_compile
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import LAMBDAS, ROOT, figure, lambda_environment, median
from pipeline.contract import API_KEY_HEADER, PAYLOADS_PATH

GOAL_RATIO = 1.25
BASELINE_MODULE = "baseline_handler"
# A sampled trace header, as Lambda sets it for an invocation that active tracing records.
TRACE_HEADER = "Root=1-6745f2b0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
# The bootstrap every sample runs: what the Lambda runtime does for INIT and the first invoke.
_CHILD = """
import json, sys, time
start = time.perf_counter()
module = __import__(sys.argv[1])
imported = time.perf_counter()

class Context:
    function_name = "ingest"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"
    memory_limit_in_mb = 1024
    aws_request_id = "6f1f5a1a-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/ingest"
    log_stream_name = "2026/11/26/[$LATEST]0123456789abcdef"
    def get_remaining_time_in_millis(self):
        return 29000

with open(sys.argv[2]) as file:
    event = json.load(file)
response = module.lambda_handler(event, Context())
answered = time.perf_counter()
if response["statusCode"] != 202:
    raise SystemExit(f"{sys.argv[1]} answered {response['statusCode']}: {response.get('body')}")
print(json.dumps({"import_s": imported - start, "first_request_s": answered - imported}), file=sys.stderr)
"""


class _SqsEndpoint(BaseHTTPRequestHandler):
    """Answers SendMessageBatch (SQS's JSON protocol) with every entry accepted."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("X-Amz-Target") != "AmazonSQS.SendMessageBatch":
            self.send_error(400, f"unexpected call {self.headers.get('X-Amz-Target')}")
            return
        body = json.dumps(
            {
                "Successful": [
                    {
                        "Id": entry["Id"],
                        "MessageId": str(uuid.uuid4()),
                        "MD5OfMessageBody": hashlib.md5(entry["MessageBody"].encode()).hexdigest(),
                    }  # noqa: S324 (SQS's own)
                    for entry in request["Entries"]
                ],
                "Failed": [],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (overrides the stdlib's signature)
        pass


@contextmanager
def sqs_endpoint() -> Iterator[str]:
    """A local SQS endpoint on 127.0.0.1 for the duration of the block; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SqsEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def stage_asset(target: Path, bytecode: bool = False) -> Path:
    """Copy lambdas/ as the asset ships it (no bytecode) plus the baseline module into ``target``;
    with ``bytecode``, byte-compiled for this interpreter (unchecked-hash .pyc, as a shipped asset
    would be: what P2c/P2d measure is the compile time a cold start would save)."""
    shutil.copytree(LAMBDAS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "bench" / f"{BASELINE_MODULE}.py", target / f"{BASELINE_MODULE}.py")
    if bytecode:
        compileall.compile_dir(target, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    return target


def child_environment(asset: Path, endpoint: str, tracing: bool) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "POWERTOOLS_", "PYTHON", "_X_AMZN"))
    }
    env.update(lambda_environment())
    env.update(
        {
            "PYTHONPATH": str(asset),
            "PYTHONDONTWRITEBYTECODE": "1",  # every sample compiles what the asset does not ship
            "LAMBDA_TASK_ROOT": str(asset),
            "AWS_LAMBDA_FUNCTION_NAME": "ingest",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_SQS": endpoint,
            "_X_AMZN_TRACE_ID": TRACE_HEADER,
            "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
        }
    )
    return env


def sample(module: str, event_file: Path, env: dict[str, str], cwd: Path) -> dict[str, float]:
    """One cold start: CPU and wall seconds of the whole process, and the child's own import/request split."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, module, str(event_file)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # children run one at a time: this one's usage
    if result.returncode:
        raise RuntimeError(f"{module} cold start failed: {result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_s": cpu, "wall_s": wall, **json.loads(result.stderr.strip().splitlines()[-1])}


def _event_file(directory: Path) -> Path:
    from bench.ingest_overhead import collection_body
    from local_pipeline.events import api_gateway_event

    event = api_gateway_event(
        "POST", PAYLOADS_PATH, collection_body(), {"Content-Type": "application/json", API_KEY_HEADER: "bench"}
    )
    path = directory / "event.json"
    path.write_text(json.dumps(event))
    return path


def measure(contenders: dict[str, tuple[str, bool, bool]], rounds: int) -> dict[str, list[dict[str, float]]]:
    """``contenders``: name -> (module, tracing, bytecode). Interleaved samples per contender."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    with tempfile.TemporaryDirectory(prefix="bench-p2-") as scratch, sqs_endpoint() as endpoint:
        assets = {compiled: stage_asset(Path(scratch) / f"asset-{compiled}", compiled) for compiled in (False, True)}
        event_file = _event_file(Path(scratch))
        runs = {
            name: (module, child_environment(assets[compiled], endpoint, tracing), assets[compiled])
            for name, (module, tracing, compiled) in contenders.items()
        }
        for name in names:  # warm the OS page cache, as a warm Lambda host would have it
            sample(runs[name][0], event_file, runs[name][1], runs[name][2])
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(sample(runs[name][0], event_file, runs[name][1], runs[name][2]))
    return samples


def _ms(samples: list[dict[str, float]], key: str) -> float:
    return round(median([s[key] for s in samples]) * 1e3, 1)


def run(rounds: int = 12) -> list[dict[str, Any]]:
    from infra.config import PipelineConfig

    default_tracing = PipelineConfig().TRACING
    # (figure, tracing, bytecode): the default configuration and asset first.
    variants = [
        ("P2", default_tracing, False),
        ("P2b", not default_tracing, False),
        ("P2c", default_tracing, True),
        ("P2d", not default_tracing, True),
    ]
    contenders = {
        "baseline": (BASELINE_MODULE, False, False),
        **{name: ("ingest_handler", tracing, compiled) for name, tracing, compiled in variants},
    }
    samples = measure(contenders, rounds)
    baseline, baseline_wall = _ms(samples["baseline"], "cpu_s"), _ms(samples["baseline"], "wall_s")
    results = []
    for name, tracing, compiled in variants:
        cpu, wall = _ms(samples[name], "cpu_s"), _ms(samples[name], "wall_s")
        ratio = cpu / baseline
        default = " (default config, asset as shipped)" if name == "P2" else ""
        results.append(
            figure(
                name,
                f"cold start, fresh process: import + first request (10 x 1 KiB), TRACING={str(tracing).lower()}, "
                f"{'with' if compiled else 'no'} bytecode{default} vs minimal boto3 handler",
                ratio,
                "x baseline",
                f"<= {GOAL_RATIO}",
                ratio <= GOAL_RATIO,
                tracing=tracing,
                bytecode=compiled,
                handler_cpu_ms=cpu,
                baseline_cpu_ms=baseline,
                handler_wall_ms=wall,
                baseline_wall_ms=baseline_wall,
                wall_ratio=round(wall / baseline_wall, 3),
                # Inside the child (wall): where the time goes.
                handler_import_ms=_ms(samples[name], "import_s"),
                handler_first_request_ms=_ms(samples[name], "first_request_s"),
                baseline_import_ms=_ms(samples["baseline"], "import_s"),
                baseline_first_request_ms=_ms(samples["baseline"], "first_request_s"),
                runs_each=rounds,
            )
        )
    return results
