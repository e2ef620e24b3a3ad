"""Device keys (DEVICE_AUTH=on): mint, revoke, list, rotate and retire, against AWS or `make run`.

    python -m tools.ops.devices --stack IngestPipeline-prod issue DEVICE_ID     # the key alone on stdout
    python -m tools.ops.devices --stack IngestPipeline-prod revoke DEVICE_ID [DEVICE_ID ...] [--from-file IDS]
    python -m tools.ops.devices --stack IngestPipeline-prod list
    python -m tools.ops.devices --stack IngestPipeline-prod rotate              # new signing generation
    python -m tools.ops.devices --stack IngestPipeline-prod retire GENERATION   # its keys stop working
    python -m tools.ops.devices --endpoint-url http://127.0.0.1:4566 issue device-1   # make run

Every command reads the keyring secret (pipeline/device_auth.py: signing keys by generation, revoked devices)
and the writing ones put it back whole with PutSecretValue. Run one at a time: Secrets Manager has no
compare-and-set, so two writers at once can lose one's change. The ingest sees a change within
DEVICE_REVOCATION_TTL_SECONDS. No key and no signing key is ever printed except the one `issue` mints.

Batch the writes: every PutSecretValue creates a secret version, and Secrets Manager removes unlabeled versions
only beyond 100 and only once they are 24 hours old, so writing more often than about once every 10 minutes, sustained,
reaches the quota for secret versions ("AWS Secrets Manager quotas",
https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html). `revoke` takes any number of
device ids (and --from-file) and writes them in ONE PutSecretValue; a write within 10 minutes of the last one is
done, with a warning.

Exit status: 0 done; 1 the command cannot do what was asked, or AWS refused; 2 bad arguments, or the set-up
points nowhere (nothing answers at the endpoint, no region or credentials), as the other tools (tools/ops/cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.device_auth import DEVICE_ID, Keyring, KeyringError, keyring_json
from tools.ops.cli import aws_problem_exit, is_loopback, session_options, stack_outputs

# "Secret value size: 65,536 bytes" (AWS Secrets Manager quotas,
# https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html): the whole keyring, so the
# revocation list gets what the signing keys leave.
SECRET_MAX_BYTES: Final = 65_536
# Two generations at most: the one that signs and the previous one, until it is retired (rotation with overlap).
MAX_ACTIVE_GENERATIONS: Final = 2
# The stack output naming the keyring secret (infra/stack.py), and make run's secret (local_pipeline).
STACK_OUTPUT: Final = "DeviceKeysSecretArn"
LOCAL_SECRET_NAME: Final = "ingest-pipeline-local-device-keys"
NEW_KEY_BYTES: Final = 48  # secrets.token_urlsafe(48): 64 characters, 384 bits
# "We recommend you avoid calling PutSecretValue or UpdateSecret at a sustained rate of more than once every 10
# minutes" (AWS Secrets Manager quotas): a write sooner than this after the last one gets a warning.
WRITE_SPACING_SECONDS: Final = 600


class DevicesError(RuntimeError):
    """The command cannot do what was asked; the message says why and what to do."""


class KeyringStore:
    """The keyring secret in Secrets Manager: read whole, changed, written back whole."""

    def __init__(self, client: Any, secret_id: str) -> None:
        self.client = client
        self.secret_id = secret_id

    def read(self) -> Keyring:
        try:
            text = self.client.get_secret_value(SecretId=self.secret_id)["SecretString"]
        except self.client.exceptions.ResourceNotFoundException as exc:
            raise DevicesError(
                f"no secret {self.secret_id}: is DEVICE_AUTH=on in that deployment (or make run)?"
            ) from exc
        try:
            return Keyring.from_document(json.loads(text))
        except (ValueError, KeyringError) as exc:
            raise DevicesError(f"the secret {self.secret_id} is not a device keyring: {exc}") from exc

    def write(self, keyring: Keyring) -> int:
        """Put the keyring back; returns its size. DevicesError if it would not fit one secret."""
        text = keyring_json(keyring)
        size = len(text.encode("utf-8"))
        if size > SECRET_MAX_BYTES:
            raise DevicesError(
                f"the keyring would be {size} bytes, over Secrets Manager's {SECRET_MAX_BYTES}: rotate, re-issue "
                "the fleet's keys, then retire the old generation (that forgets its revoked devices)"
            )
        self.client.put_secret_value(SecretId=self.secret_id, SecretString=text)
        return size

    def seconds_since_last_change(self) -> float | None:
        """How long ago the secret last changed (DescribeSecret's LastChangedDate); None if it cannot be told."""
        try:
            changed = self.client.describe_secret(SecretId=self.secret_id).get("LastChangedDate")
        except (ClientError, BotoCoreError):
            return None  # only a warning depends on it
        if not isinstance(changed, datetime):
            return None
        return (datetime.now(UTC) - changed.astimezone(UTC)).total_seconds()


def issue(store: KeyringStore, device_id: str) -> str:
    """A key for ``device_id``, signed with the current generation."""
    keyring = store.read()
    if device_id in keyring.revoked:
        raise DevicesError(f"device {device_id} is revoked: give the device a new id")
    try:
        return keyring.issue(device_id)
    except ValueError as exc:
        raise DevicesError(str(exc)) from exc


def revoke(store: KeyringStore, device_ids: Sequence[str]) -> list[str]:
    """Refuse every key of these devices from now on (within the ingest's TTL); returns the newly revoked."""
    keyring = store.read()
    for device_id in device_ids:
        if not DEVICE_ID.fullmatch(device_id):
            raise DevicesError(f"{device_id[:80]!r} is not a device id")
    new = [device_id for device_id in dict.fromkeys(device_ids) if device_id not in keyring.revoked]
    if new:
        # Every generation up to the current one: the device can hold a key of any of them.
        revoked = {**keyring.revoked, **{device_id: keyring.current for device_id in new}}
        store.write(Keyring(keyring.current, keyring.keys, keyring.retired, revoked))
    return new


def rotate(store: KeyringStore) -> int:
    """A new signing generation; the previous one still verifies until it is retired. Returns the new one."""
    keyring = store.read()
    if len(keyring.keys) >= MAX_ACTIVE_GENERATIONS:
        older = min(g for g in keyring.keys if g != keyring.current)
        raise DevicesError(
            f"generations {', '.join(map(str, sorted(keyring.keys)))} are both active: re-issue the fleet's keys, "
            f"then `retire {older}` before rotating again"
        )
    generation = max([*keyring.keys, *keyring.retired]) + 1
    keys = {**keyring.keys, generation: secrets.token_urlsafe(NEW_KEY_BYTES).encode("ascii")}
    store.write(Keyring(generation, keys, keyring.retired, keyring.revoked))
    return generation


def retire(store: KeyringStore, generation: int) -> list[str]:
    """Stop accepting keys of ``generation``; returns the revoked devices forgotten with it."""
    keyring = store.read()
    if generation == keyring.current:
        raise DevicesError(f"generation {generation} signs new keys: `rotate` first, re-issue, then retire it")
    if generation not in keyring.keys:
        raise DevicesError(f"generation {generation} is not active (active: {sorted(keyring.keys)})")
    keys = {g: key for g, key in keyring.keys.items() if g != generation}
    # A device revoked when the newest generation was N only holds keys of generations <= N; once all of those
    # are retired, no key of it can verify, so its entry only takes room in the 64 KiB secret.
    oldest_active = min(keys)
    forgotten = sorted(d for d, g in keyring.revoked.items() if g < oldest_active)
    revoked = {d: g for d, g in keyring.revoked.items() if g >= oldest_active}
    store.write(Keyring(keyring.current, keys, keyring.retired | {generation}, revoked))
    return forgotten


def describe(keyring: Keyring) -> list[str]:
    """What `list` prints: generations and revoked devices, never a key."""
    size = len(keyring_json(keyring).encode("utf-8"))
    lines = [
        f"signing generation  {keyring.current}",
        f"active generations  {', '.join(map(str, sorted(keyring.keys)))} (keys of these verify)",
        f"retired generations {', '.join(map(str, sorted(keyring.retired))) or '-'}",
        f"revoked devices     {len(keyring.revoked)} (keyring {size} of {SECRET_MAX_BYTES} bytes)",
    ]
    lines += [f"  {device_id}  (keys of generation <= {g})" for device_id, g in sorted(keyring.revoked.items())]
    return lines


def revocations_that_fit(device_id_chars: int) -> int:
    """How many revoked devices with ids of ``device_id_chars`` characters one keyring holds, next to two active
    generations of 64-character signing keys (docs/DEVICE_KEYS.md; a test keeps the figures there)."""
    keys = {1: b"k" * 64, 2: b"k" * 64}

    def size(count: int) -> int:
        revoked = {f"{n:0{device_id_chars}d}": 2 for n in range(count)}
        return len(keyring_json(Keyring(2, keys, frozenset(), revoked)).encode("utf-8"))

    low, high = 0, SECRET_MAX_BYTES  # size(low) fits, size(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if size(middle) <= SECRET_MAX_BYTES else (low, middle)
    return low


def stack_secret(cloudformation: Any, stack_name: str) -> str:
    """The keyring secret's ARN from the stack's outputs."""
    try:
        outputs = stack_outputs(cloudformation, stack_name)
    except ClientError as exc:
        raise DevicesError(f"cannot read stack {stack_name}: {exc}") from exc
    if STACK_OUTPUT not in outputs:
        raise DevicesError(f"stack {stack_name} has no output {STACK_OUTPUT}: was it deployed with DEVICE_AUTH=on?")
    return outputs[STACK_OUTPUT]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ops.devices", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--stack", help=f"read the keyring secret from this CloudFormation stack's {STACK_OUTPUT}")
    where.add_argument("--secret-id", help="the keyring secret's name or ARN")
    parser.add_argument(
        "--endpoint-url",
        help="an AWS endpoint such as make run's http://127.0.0.1:4566 (default: AWS_ENDPOINT_URL, else AWS); "
        f"on a loopback endpoint the secret defaults to {LOCAL_SECRET_NAME}",
    )
    parser.add_argument("--region", help="AWS region (default: your profile's)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("issue", help="mint a key for a device; prints the key alone").add_argument("device_id")
    revoke_help = (
        "refuse these devices' keys, all in ONE write: PutSecretValue more often than about once every 10 minutes "
        "exhausts the secret's version quota, so revoke a batch at once, not one device per command"
    )
    revoke_parser = commands.add_parser("revoke", help=revoke_help, description=revoke_help)
    revoke_parser.add_argument("device_ids", nargs="*", metavar="DEVICE_ID")
    revoke_parser.add_argument(
        "--from-file", metavar="IDS", help="also every device id in this file, one per line ('-': standard input)"
    )
    commands.add_parser("list", help="generations and revoked devices")
    commands.add_parser("rotate", help="add a signing generation (the previous one keeps working)")
    commands.add_parser("retire", help="stop accepting keys of a generation").add_argument("generation", type=int)
    return parser


def _secret_id(args: argparse.Namespace, endpoint: str | None, session: boto3.Session) -> str:
    if args.secret_id:
        return str(args.secret_id)
    if args.stack:
        return stack_secret(session.client("cloudformation", endpoint_url=endpoint), args.stack)
    if is_loopback(endpoint):
        return LOCAL_SECRET_NAME
    raise DevicesError("name the keyring: --stack STACK or --secret-id NAME (or --endpoint-url of make run)")


def _ids_from_file(path: str | None) -> list[str]:
    """The device ids of --from-file: one per line; blank lines and lines starting with '#' are skipped."""
    if path is None:
        return []
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise DevicesError(f"cannot read {path}: {exc.strerror}") from exc
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _warn_if_soon(err: TextIO, seconds_since_last_change: float | None) -> None:
    if seconds_since_last_change is not None and seconds_since_last_change < WRITE_SPACING_SECONDS:
        err.write(
            f"devices: warning: the keyring was last written {seconds_since_last_change / 60:.0f} minute(s) before "
            "this change; writing it more often than about once every 10 minutes, sustained, exhausts the secret's "
            "version quota (AWS Secrets Manager quotas): batch revocations into one `revoke` (several ids, or "
            "--from-file)\n"
        )


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    try:
        session = boto3.Session(**session_options(endpoint, args.region))
        store = KeyringStore(
            session.client("secretsmanager", endpoint_url=endpoint), _secret_id(args, endpoint, session)
        )
        if args.command == "issue":
            out.write(issue(store, args.device_id) + "\n")
            err.write(f"issued a key for device {args.device_id} (keyring {store.secret_id})\n")
        elif args.command == "revoke":
            device_ids = [*args.device_ids, *_ids_from_file(args.from_file)]
            if not device_ids:
                raise DevicesError("name the devices to revoke: DEVICE_ID ... or --from-file IDS")
            last_change = store.seconds_since_last_change()
            new = revoke(store, device_ids)
            already = sorted(set(device_ids) - set(new))
            if new:
                _warn_if_soon(err, last_change)
            if new:
                err.write(
                    f"revoked {', '.join(new)}: every warm ingest refuses their keys within "
                    "DEVICE_REVOCATION_TTL_SECONDS\n"
                )
            if already:
                err.write(f"already revoked: {', '.join(already)}\n")
        elif args.command == "list":
            out.write("\n".join(describe(store.read())) + "\n")
        elif args.command == "rotate":
            last_change = store.seconds_since_last_change()
            generation = rotate(store)
            _warn_if_soon(err, last_change)
            err.write(
                f"generation {generation} now signs new keys; the previous generation still verifies: re-issue "
                "every device's key, then retire it\n"
            )
        else:
            last_change = store.seconds_since_last_change()
            forgotten = retire(store, args.generation)
            _warn_if_soon(err, last_change)
            err.write(f"retired generation {args.generation}: its keys are refused within the TTL")
            err.write(
                f"; forgot {len(forgotten)} revoked device(s) no active generation can sign\n" if forgotten else "\n"
            )
    except DevicesError as exc:
        err.write(f"devices: {exc}\n")
        return 1
    except (ClientError, BotoCoreError) as exc:
        return aws_problem_exit("devices", exc, err, endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
