"""`make run` as a user meets it: a real HTTP client, boto3 against the embedded AWS, Ctrl-C."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from local_pipeline.launch import free_port, process_group_alive
from local_pipeline.local_settings import REPO_ROOT
from tests.conftest import collection
from tests.local.conftest import QUEUE, LocalRun, port_is_free, start_local_pipeline, wait_for
from tests.local.test_tools_against_make_run import bare_environment, run_tool

KEY = {"x-api-key": "local-dev-key"}
JSON = {"Content-Type": "application/json", **KEY}


def stored_by_id(run: LocalRun) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    by_id: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, record in run.objects().items():
        by_id.setdefault(record["id"], []).append((key, record))
    return by_id


def test_valid_posts_are_stored_once_and_invalid_ones_get_problems(local_run: LocalRun) -> None:
    # Given three valid requests, one of them gzip-compressed (a binary body)
    sent = {
        "plain-a": (json.dumps(collection(4)).encode(), JSON),
        "plain-b": (json.dumps(collection(7)).encode(), JSON),
        "gzip": (gzip.compress(json.dumps(collection(3)).encode()), {**JSON, "Content-Encoding": "gzip"}),
    }
    accepted: dict[str, dict[str, Any]] = {}
    # When they are POSTed
    for name, (body, headers) in sent.items():
        response = requests.post(f"{local_run.url}/v1/payloads", data=body, headers=headers, timeout=30)
        # Then each is accepted with the handler's own response
        assert response.status_code == 202, response.text
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["requestId"] == response.headers["x-amzn-RequestId"]
        accepted[name] = response.json()
    assert [a["accepted"] for a in accepted.values()] == [4, 7, 3]

    # And every accepted payload is in the embedded S3 exactly once, unchanged
    expected = {f"{a['requestId']}-{i}" for a in accepted.values() for i in range(a["accepted"])}
    by_id = wait_for(
        lambda: (found := stored_by_id(local_run)) and expected <= found.keys() and found, 30, "all 14 payloads in S3"
    )
    assert all(len(by_id[payload_id]) == 1 for payload_id in expected)
    request_b = accepted["plain-b"]["requestId"]
    assert [by_id[f"{request_b}-{i}"][0][1]["payload"] for i in range(7)] == collection(7)["data"]
    key, _ = by_id[f"{request_b}-0"][0]
    assert key.startswith("payloads/dt=") and key.endswith(f"/{request_b}-0.json")


def test_refusals_are_problem_json_like_the_deployed_api(local_run: LocalRun) -> None:
    url = f"{local_run.url}/v1/payloads"
    body = json.dumps(collection(2))
    cases = {
        "no key": (
            requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10),
            403,
            "forbidden",
        ),
        "wrong key": (
            requests.post(url, data=body, headers={**JSON, "x-api-key": "nope"}, timeout=10),
            403,
            "forbidden",
        ),
        "bad json": (requests.post(url, data=b'{"version": ', headers=JSON, timeout=10), 400, None),
        "unknown path": (
            requests.post(f"{local_run.url}/v2/things", data=body, headers=JSON, timeout=10),
            404,
            "not-found",
        ),
        "wrong method": (requests.get(url, headers=KEY, timeout=10), 405, "method-not-allowed"),
        "unknown method": (requests.request("TRACE", url, headers=KEY, timeout=10), 405, "method-not-allowed"),
    }
    for name, (response, status, slug) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert response.headers["Content-Type"] == "application/problem+json", name
        problem = response.json()
        assert problem["status"] == status and problem["title"] and problem["detail"], name
        assert problem["type"].startswith("urn:ingest-pipeline:problem:"), name
        if slug:
            assert problem["type"] == f"urn:ingest-pipeline:problem:{slug}", name
    assert cases["wrong method"][0].headers["Allow"] == cases["unknown method"][0].headers["Allow"] == "POST"
    assert cases["no key"][0].json()["requestId"] == cases["no key"][0].headers["x-amzn-RequestId"]


def test_a_body_above_api_gateways_limit_is_refused_unread(local_run: LocalRun) -> None:
    # Given a client announcing a 20 MB body (API Gateway REST stops at 10 MB)
    with socket.create_connection(("127.0.0.1", local_run.port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/payloads HTTP/1.1\r\nHost: x\r\nx-api-key: local-dev-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n"
        )
        # When it has sent only the headers, Then it already has its 413 problem, and the connection closes
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["type"] == "urn:ingest-pipeline:problem:body-too-large"


def test_an_injected_consumer_failure_is_redelivered_then_stored(local_run: LocalRun) -> None:
    # Given a request where 2 of 5 payloads make the consumer's S3 write fail on their first delivery
    sent = collection(5)
    sent["data"][1]["note"] = sent["data"][3]["note"] = "flaky-record"
    response = requests.post(f"{local_run.url}/v1/payloads", json=sent, headers=KEY, timeout=30)
    assert response.status_code == 202
    request_id = response.json()["requestId"]
    expected = {f"{request_id}-{i}" for i in range(5)}
    # When the worker pool has had time to retry (visibility timeout 1 s here)
    by_id = wait_for(
        lambda: (found := stored_by_id(local_run)) and expected <= found.keys() and found, 30, "the 5 payloads in S3"
    )
    # Then all 5 are stored exactly once, including the two that failed first
    assert all(len(by_id[payload_id]) == 1 for payload_id in expected)
    assert by_id[f"{request_id}-3"][0][1]["payload"] == sent["data"][3]
    # And the console shows the failed delivery that made SQS redeliver them
    assert any(
        "failures=2" in line or "failures=1" in line
        for line in local_run.output().splitlines()
        if line.split(" ", 2)[1:2] == ["batch"]
    )


def test_a_poison_message_reaches_the_dlq(local_run: LocalRun) -> None:
    # Given a message on the queue that is not an envelope the ingest wrote
    sqs = local_run.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="this is not an envelope")

    # When the worker pool fails it MAX_RECEIVE_COUNT (2 here) times
    def in_dlq() -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1, VisibilityTimeout=60).get("Messages", [])

    # Then it is in the DLQ, unchanged, and nothing of it reached the bucket
    messages = wait_for(in_dlq, 30, "the poison message in the DLQ")
    assert [m["Body"] for m in messages] == ["this is not an envelope"]
    assert all("not an envelope" not in json.dumps(record) for record in local_run.objects().values())


def environment_pids(runner_pid: int) -> list[int]:
    """The Lambda environments: the runner's spawned worker processes."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if ppid == runner_pid and b"spawn_main" in command:
            pids.append(int(stat.parent.name))
    return pids


def test_environments_that_die_are_replaced_like_lambda_does(local_run: LocalRun) -> None:
    # Given every Lambda environment of the runner is killed (as an out-of-memory kill would)
    victims = environment_pids(local_run.process.pid)
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    # When clients keep posting
    statuses, accepted = [], []
    for _ in range(4):
        response = requests.post(f"{local_run.url}/v1/payloads", json=collection(2), headers=KEY, timeout=30)
        statuses.append(response.status_code)
        if response.status_code == 202:
            accepted.append(response.json()["requestId"])
    # Then at most the first request meets the dead environment (a 502 problem, as API Gateway answers a
    # crashed function), fresh environments take over, and what was accepted is stored
    assert statuses[1:] == [202, 202, 202] and statuses[0] in (202, 502), statuses
    expected = {f"{request_id}-{i}" for request_id in accepted for i in range(2)}
    wait_for(lambda: expected <= stored_by_id(local_run).keys(), 30, "the accepted payloads in S3")
    assert not set(victims) & set(environment_pids(local_run.process.pid))


def test_ctrl_c_drains_prints_a_summary_and_exits_0(tmp_path: Path) -> None:
    # Given a running pipeline that has just accepted 10 payloads
    run = start_local_pipeline(tmp_path, MAX_WORKERS="2")
    try:
        response = requests.post(f"{run.url}/v1/payloads", json=collection(10), headers=KEY, timeout=30)
        assert response.status_code == 202
        # When the user presses Ctrl-C right away
        exit_code = run.stop(signal.SIGINT)
        # Then it exits 0 after storing what was queued, and says so
        assert exit_code == 0, run.output()
        output = run.output()
        assert "payloads accepted 10" in output and "payloads stored   10" in output, output
        assert "in DLQ            0" in output and "still queued" not in output, output
        # And it leaves no process behind and frees both ports
        wait_for(lambda: not process_group_alive(run.process.pid), 10, "every runner process to exit")
        assert port_is_free(run.port) and port_is_free(run.aws_port)
    finally:
        run.kill_leftovers()


def test_a_busy_port_is_a_clear_error() -> None:
    # Given something already listening on the port the user chose
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        # When the pipeline is started on it
        environment = {**os.environ, "PORT": str(busy), "MOTO_PORT": str(free_port())}
        environment.pop("AWS_ENDPOINT_URL", None)
        result = subprocess.run(
            [sys.executable, "-m", "local_pipeline"],
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
    # Then it says which port and which knob, and exits non-zero
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1:{busy}" in result.stderr and "PORT" in result.stderr


def blocked_signals(pid: int) -> dict[int, int]:
    """Thread id -> its blocked-signal mask (SigBlk in /proc), for the threads alive while we read (a
    connection's thread may end between the listing and the read)."""
    masks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:
            continue
        masks[int(task.name)] = int(status.split("SigBlk:")[1].split()[0], 16)
    return masks


def test_only_the_runners_main_thread_takes_ctrl_c_and_sigterm(local_run: LocalRun) -> None:
    # Given a runner that has served requests (HTTP threads, pollers and environments all started)
    assert requests.post(f"{local_run.url}/v1/payloads", json=collection(2), headers=KEY, timeout=30).status_code == 202
    stop_signals = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    # When we look at which of its threads a SIGINT or SIGTERM can land on
    masks = blocked_signals(local_run.process.pid)
    main = masks.pop(local_run.process.pid)
    # Then only the main thread, which runs the handler (the others block both, so the kernel
    # never hands a signal to a thread where CPython cannot run it)
    assert main & stop_signals == 0
    assert masks and all(mask & stop_signals == stop_signals for mask in masks.values()), masks
    # And every Lambda environment blocks SIGTERM in every thread but the one that checks its sender
    for pid in environment_pids(local_run.process.pid):
        blocked = [mask & (1 << (signal.SIGTERM - 1)) for mask in blocked_signals(pid).values()]
        assert blocked.count(0) <= 1, (pid, blocked)


def test_an_aws_endpoint_url_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    # Given a new user's shell with no AWS credentials, and AWS_ENDPOINT_URL on this machine where nothing listens
    environment = bare_environment(tmp_path, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", PORT=str(free_port()))
    # When the pipeline is started against it
    result = run_tool("local_pipeline", [], environment)
    # Then it uses fake credentials on loopback as the other tools do (no "no AWS credentials"), and says in one
    # line that nothing answers at that endpoint, with exit 2 instead of a traceback
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"make run: nothing answers at AWS_ENDPOINT_URL={environment['AWS_ENDPOINT_URL']}")
    assert "unset AWS_ENDPOINT_URL" in lines[0], lines[0]
