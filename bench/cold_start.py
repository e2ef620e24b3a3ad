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
ships it today; the other three say what each choice is worth. P2e/P2f are the HTTP API front door with
device keys (API_KIND=http, DEVICE_AUTH=on; TRACING on, then off as the scale profile runs it): a payload
format 2.0 event with a valid device key, whose first request also reads the keyring from Secrets Manager
(GetSecretValue, answered by the same local endpoint; pipeline/device_auth.py).
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

# Issue 26's goals: P2 (and the other DEVICE_AUTH=off variants) within 1.10x of the minimal handler; with device keys
# (P2e, P2f: the HTTP API front door, the first request also reading the keyring) within 1.25x.
GOAL_RATIO = 1.10
DEVICE_GOAL_RATIO = 1.25
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


# The device keyring the DEVICE_AUTH=on contenders read (a fixed bench key: nothing here is secret).
BENCH_KEYRING = {"format": 1, "current": 1, "k1": "b" * 64, "retired": [], "revoked": {}}
BENCH_SECRET = "bench-device-keys"
BENCH_DEVICE = "bench-device-0001"


class _AwsEndpoint(BaseHTTPRequestHandler):
    """Answers SendMessageBatch (SQS's JSON protocol) with every entry accepted, and GetSecretValue (Secrets
    Manager's JSON protocol) with the bench keyring."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        target = self.headers.get("X-Amz-Target")
        if target == "secretsmanager.GetSecretValue":
            self._answer(
                json.dumps(
                    {
                        "ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{BENCH_SECRET}-AbCdEf",
                        "Name": BENCH_SECRET,
                        "VersionId": "6f1f5a1a-0000-4000-8000-000000000001",
                        "SecretString": json.dumps(BENCH_KEYRING),
                        "VersionStages": ["AWSCURRENT"],
                        "CreatedDate": 1764000000.0,
                    }
                ).encode()
            )
            return
        if target != "AmazonSQS.SendMessageBatch":
            self.send_error(400, f"unexpected call {target}")
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
        self._answer(body)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (overrides the stdlib's signature)
        pass


@contextmanager
def sqs_endpoint() -> Iterator[str]:
    """A local SQS (and Secrets Manager) endpoint on 127.0.0.1 for the duration of the block; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AwsEndpoint)
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


def child_environment(asset: Path, endpoint: str, tracing: bool, device_auth: bool = False) -> dict[str, str]:
    from infra.config import PipelineConfig

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "POWERTOOLS_", "PYTHON", "_X_AMZN"))
    }
    config = PipelineConfig(API_KIND="http", DEVICE_AUTH="on") if device_auth else None
    env.update(lambda_environment(config))
    if device_auth:
        env.update({"DEVICE_KEYS_SECRET": BENCH_SECRET, "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint})
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


def _event_file(directory: Path, device_auth: bool = False) -> Path:
    """The REST event of P2, or with ``device_auth`` the HTTP API (payload format 2.0) event of P2e/P2f: the
    same body, as the HTTP API passes application/json (text), with a valid device key."""
    from bench.ingest_overhead import collection_body
    from local_pipeline.events import api_gateway_event, http_api_event
    from pipeline.device_auth import Keyring

    if not device_auth:
        event = api_gateway_event(
            "POST", PAYLOADS_PATH, collection_body(), {"Content-Type": "application/json", API_KEY_HEADER: "bench"}
        )
    else:
        key = Keyring.from_document(BENCH_KEYRING).issue(BENCH_DEVICE)
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        event = http_api_event("POST", PAYLOADS_PATH, collection_body(), headers, request_id="JKJaXmPLvHcESHA=")
    path = directory / f"event-{'http' if device_auth else 'rest'}.json"
    path.write_text(json.dumps(event))
    return path


def measure(contenders: dict[str, tuple[str, bool, bool, bool]], rounds: int) -> dict[str, list[dict[str, float]]]:
    """``contenders``: name -> (module, tracing, bytecode, device auth over the HTTP API). Interleaved samples."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    with tempfile.TemporaryDirectory(prefix="bench-p2-") as scratch, sqs_endpoint() as endpoint:
        assets = {compiled: stage_asset(Path(scratch) / f"asset-{compiled}", compiled) for compiled in (False, True)}
        events = {device: _event_file(Path(scratch), device) for device in (False, True)}
        runs = {
            name: (module, child_environment(assets[compiled], endpoint, tracing, device), assets[compiled], device)
            for name, (module, tracing, compiled, device) in contenders.items()
        }
        for name in names:  # warm the OS page cache, as a warm Lambda host would have it
            module, env, asset, device = runs[name]
            sample(module, events[device], env, asset)
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                module, env, asset, device = runs[name]
                samples[name].append(sample(module, events[device], env, asset))
    return samples


def _ms(samples: list[dict[str, float]], key: str) -> float:
    return round(median([s[key] for s in samples]) * 1e3, 1)


def run(rounds: int = 12) -> list[dict[str, Any]]:
    from infra.config import PipelineConfig

    default_tracing = PipelineConfig().TRACING
    # (figure, tracing, bytecode, HTTP API + device keys): the default configuration and asset first.
    variants = [
        ("P2", default_tracing, False, False),
        ("P2b", not default_tracing, False, False),
        ("P2c", default_tracing, True, False),
        ("P2d", not default_tracing, True, False),
        ("P2e", True, False, True),
        ("P2f", False, False, True),
    ]
    contenders = {
        "baseline": (BASELINE_MODULE, False, False, False),
        **{name: ("ingest_handler", tracing, compiled, device) for name, tracing, compiled, device in variants},
    }
    samples = measure(contenders, rounds)
    baseline, baseline_wall = _ms(samples["baseline"], "cpu_s"), _ms(samples["baseline"], "wall_s")
    results = []
    for name, tracing, compiled, device in variants:
        cpu, wall = _ms(samples[name], "cpu_s"), _ms(samples[name], "wall_s")
        ratio = cpu / baseline
        goal = DEVICE_GOAL_RATIO if device else GOAL_RATIO
        default = " (default config, asset as shipped)" if name == "P2" else ""
        front = "API_KIND=http DEVICE_AUTH=on (keyring read included), " if device else ""
        results.append(
            figure(
                name,
                f"cold start, fresh process: import + first request (10 x 1 KiB), {front}"
                f"TRACING={str(tracing).lower()}, "
                f"{'with' if compiled else 'no'} bytecode{default} vs minimal boto3 handler",
                ratio,
                "x baseline",
                f"<= {goal}",
                ratio <= goal,
                tracing=tracing,
                bytecode=compiled,
                api_kind="http" if device else "rest",
                device_auth="on" if device else "off",
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
