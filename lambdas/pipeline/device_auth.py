"""Per-device keys (DEVICE_AUTH=on): ``Authorization: Bearer <device key>``, verified with no network call.

A device key names its device and the generation of the signing secret it was signed with:

    dk1.<deviceId>.<generation>.<signature>
    signature = base64url(HMAC-SHA256(signing key of <generation>, "dk1\\n<deviceId>\\n<generation>")), 43 chars

``deviceId`` is 1-64 of ``A-Z a-z 0-9 _ -`` (pipeline/contract.py MAX_DEVICE_ID_CHARS: it goes into every
envelope), ``generation`` a positive integer. The key is a bearer credential: it is compared in constant
time (``hmac.compare_digest``) and never logged, echoed or stored; only the device id it proves is.

The signing keys and the revocation list live in ONE Secrets Manager secret (the keyring), a JSON object
whose layout CloudFormation can create with a generated first key (infra/device_keys_construct.py):

    {"format": 1, "current": 2, "k1": "<key of generation 1>", "k2": "<key of generation 2>",
     "retired": [], "revoked": {"<deviceId>": <the newest generation when it was revoked>}}

Every active generation verifies (rotation with overlap); ``current`` signs new keys (tools/ops/devices.py).

How a container holds the keyring (``SecretKeyring``), and why it is not Powertools Parameters' cache:

* A keyring read is fresh for ``DEVICE_REVOCATION_TTL_SECONDS``; the first request after that reads the secret
  again, synchronously: a revocation reaches every container within the TTL whenever the secret is readable, at
  one GetSecretValue per container per TTL. A request in between costs a monotonic clock read and a comparison.
* When that read fails (Secrets Manager unavailable, throttled, slow, denied; the secret not a keyring), the
  container goes on serving its last good keyring until it is ``DEVICE_REVOCATION_TTL_SECONDS +
  DEVICE_KEYRING_STALE_SECONDS`` old (a stale keyring: KeyringStaleServed per request, a WARNING per failed
  read), then fails closed: 503 + Retry-After, ``device-auth-unavailable``. A revocation written during an
  outage therefore takes effect at most TTL + stale window after it was written (as a 403 once the secret is read
  again, or as everyone's 503 when the window ends).
* A container reads the secret at most once per second, one read at a time, and backs off while reads fail (1, 2,
  4 ... 16 s between attempts): never a read per request. Powertools' cache raises on a failed read and keeps
  nothing, so after its TTL every request during an outage would call GetSecretValue again, against the 10,000
  per second that GetSecretValue and DescribeSecret share in an account and region ("AWS Secrets Manager
  quotas", https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html). Without its
  cache, what Powertools' SecretsProvider would add is one GetSecretValue call and json.loads.
* A credential that is not a device key at all is a 401 before any of this: it never costs a read, and never
  gets a 503 that invites a retry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pipeline.contract import MAX_DEVICE_ID_CHARS
from pipeline.problems import Problem, service_unavailable

KEY_PREFIX: Final = "dk1"
KEYRING_FORMAT: Final = 1
_BASE64URL = "[A-Za-z0-9_-]"  # a device id's characters, and the signature's
DEVICE_ID = re.compile(f"{_BASE64URL}{{1,{MAX_DEVICE_ID_CHARS}}}")
_SIGNATURE_CHARS = 43  # 32 bytes of HMAC-SHA256, base64url without padding
_MAX_GENERATION_DIGITS = 9
_DEVICE_KEY = re.compile(
    rf"{KEY_PREFIX}\.(?P<device>{DEVICE_ID.pattern})"
    rf"\.(?P<generation>[1-9][0-9]{{0,{_MAX_GENERATION_DIGITS - 1}}})"
    rf"\.(?P<signature>{_BASE64URL}{{{_SIGNATURE_CHARS}}})"
)
# The longest Authorization value worth parsing: "Bearer " + the longest key, with room to spare. Anything
# longer is refused before a regular expression or HMAC sees it.
MAX_AUTHORIZATION_CHARS: Final = 256
# RFC 6750 section 3: the challenge a 401 carries; error="invalid_token" when a credential was sent.
_CHALLENGE = 'Bearer realm="ingest-pipeline"'


class KeyringError(ValueError):
    """The keyring secret is not a keyring this code can read (a deployment or operator error)."""


class KeyringUnreadable(Exception):
    """Secrets Manager did not return the keyring (unavailable, throttled, denied, not JSON)."""


class DeviceKeysUnavailable(Exception):
    """The keyring could not be read: the request cannot be authenticated now (503, Retry-After)."""

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.problem = service_unavailable(
            "device-auth-unavailable", "device keys cannot be verified right now; retry later", retry_after_seconds
        )


def unauthorized(detail: str, credential_sent: bool) -> Problem:
    """401: no key, or one that is not a device key at all. The challenge tells the client which scheme."""
    challenge = f'{_CHALLENGE}, error="invalid_token"' if credential_sent else _CHALLENGE
    return Problem(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def forbidden(slug: str, detail: str) -> Problem:
    """403: a well-formed key this deployment refuses (bad signature, retired generation, revoked device)."""
    return Problem(403, slug, "Forbidden", detail)


def key_signature(signing_key: bytes, device_id: str, generation: int) -> str:
    """The signature part of a device key: HMAC-SHA256 over the prefix, device id and generation."""
    message = f"{KEY_PREFIX}\n{device_id}\n{generation}".encode("ascii")
    digest = hmac.new(signing_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Keyring:
    """The signing keys by generation, and the devices refused whatever their key says."""

    current: int
    keys: Mapping[int, bytes]  # the active generations: each one verifies
    retired: frozenset[int]
    revoked: Mapping[str, int]  # device id -> the newest generation when it was revoked

    @classmethod
    def from_document(cls, document: object) -> Keyring:
        """Read the secret's JSON object; KeyringError names what is wrong (never a key's value)."""
        if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
            raise KeyringError(f"the keyring is not a JSON object with format {KEYRING_FORMAT}")
        keys: dict[int, bytes] = {}
        for name, value in document.items():
            if re.fullmatch(r"k[1-9][0-9]*", name):
                if not isinstance(value, str) or len(value) < 32:
                    raise KeyringError(f"the keyring's {name} is not a string of at least 32 characters")
                keys[int(name[1:])] = value.encode("utf-8")
        current, retired, revoked = document.get("current"), document.get("retired", []), document.get("revoked", {})
        if not isinstance(current, int) or current not in keys:
            raise KeyringError("the keyring's current generation has no key")
        if not isinstance(retired, list) or not all(isinstance(g, int) for g in retired):
            raise KeyringError("the keyring's retired generations are not a list of integers")
        if not isinstance(revoked, dict) or not all(
            isinstance(d, str) and isinstance(g, int) for d, g in revoked.items()
        ):
            raise KeyringError("the keyring's revoked devices are not an object of device id -> generation")
        return cls(current, keys, frozenset(retired), dict(revoked))

    def to_document(self) -> dict[str, Any]:
        """The secret's JSON object (tools/ops/devices.py writes it back)."""
        document: dict[str, Any] = {"format": KEYRING_FORMAT, "current": self.current}
        document.update({f"k{generation}": key.decode("utf-8") for generation, key in sorted(self.keys.items())})
        document["retired"] = sorted(self.retired)
        document["revoked"] = dict(sorted(self.revoked.items()))
        return document

    def issue(self, device_id: str) -> str:
        """A key for ``device_id``, signed with the current generation."""
        if not DEVICE_ID.fullmatch(device_id):
            raise ValueError(
                f"a device id is 1 to {MAX_DEVICE_ID_CHARS} characters of A-Z, a-z, 0-9, '_' and '-'; "
                f"got {device_id[:80]!r}"
            )
        signature = key_signature(self.keys[self.current], device_id, self.current)
        return f"{KEY_PREFIX}.{device_id}.{self.current}.{signature}"

    def verify(self, device_key: str) -> str:
        """The device id ``device_key`` proves; Problem 401 if it is not a device key, 403 if refused."""
        return self.verify_parsed(parse_device_key(device_key))

    def verify_parsed(self, match: re.Match[str]) -> str:
        """The device id a key parsed by ``parse_device_key`` proves; Problem 403 if this keyring refuses it."""
        device_id, generation = match["device"], int(match["generation"])
        signing_key = self.keys.get(generation)
        if signing_key is None:
            if generation in self.retired:
                raise forbidden("retired-key", f"keys of generation {generation} are retired; ask for a new key")
            raise forbidden("invalid-key", "the device key is not valid for this deployment")
        expected = key_signature(signing_key, device_id, generation)
        if not hmac.compare_digest(expected.encode("ascii"), match["signature"].encode("ascii")):
            raise forbidden("invalid-key", "the device key is not valid for this deployment")
        # Only a key with a valid signature learns that its device is revoked.
        if device_id in self.revoked and generation <= self.revoked[device_id]:
            raise forbidden("revoked-device", f"device {device_id} is revoked")
        return device_id


def parse_device_key(device_key: str) -> re.Match[str]:
    """The parts of a device key (device, generation, signature); Problem 401 if it is not shaped like one.
    Needs no keyring, so a credential that is not a device key is refused before any secret read."""
    match = _DEVICE_KEY.fullmatch(device_key)
    if match is None:
        raise unauthorized(
            f"the Authorization header must be 'Bearer {KEY_PREFIX}.<device id>.<generation>.<signature>'",
            credential_sent=True,
        )
    return match


def bearer_key(authorization: Sequence[str]) -> str:
    """The device key of the request's Authorization header(s); Problem 401 unless there is exactly one
    ``Bearer <token>``. HTTP API payload 2.0 joins repeated headers with commas, REST passes each value:
    both mean two credentials, and a key never contains a comma."""
    if not authorization or not any(value.strip() for value in authorization):
        raise unauthorized("this API needs 'Authorization: Bearer <device key>'", credential_sent=False)
    if len(authorization) > 1 or "," in authorization[0]:
        raise unauthorized("send exactly one Authorization header", credential_sent=True)
    value = authorization[0].strip(" \t")
    if len(value) > MAX_AUTHORIZATION_CHARS:
        detail = f"the Authorization header is over {MAX_AUTHORIZATION_CHARS} characters"
        raise unauthorized(detail, credential_sent=True)
    scheme, _, token = value.partition(" ")
    # The scheme is case-insensitive (RFC 9110 section 11.1); one or more spaces before the token68.
    if scheme.lower() != "bearer" or not token.strip(" "):
        raise unauthorized(
            "the Authorization header must use the Bearer scheme: 'Bearer <device key>'", credential_sent=True
        )
    return token.strip(" ")


# A container reads the keyring secret at most once a second; after a failed read it waits 1, 2, 4, 8, then 16 s
# before the next. The cap bounds how long a container takes to notice that the secret is readable again, and what a
# slow endpoint costs: each attempt can hold its request for up to aws_clients.SECRETS_WORST_CASE_SECONDS. At 1,000
# warm ingests that is at most ~63 GetSecretValue a second fleet-wide during an outage, against the 10,000 a second
# GetSecretValue and DescribeSecret share ("AWS Secrets Manager quotas").
MIN_REFRESH_INTERVAL_SECONDS: Final = 1.0
MAX_REFRESH_BACKOFF_SECONDS: Final = 16.0


class KeyringSignals(Protocol):
    """What a container's keyring reports (the ingest counts and logs them: pipeline/observability.py)."""

    def refresh_failed(self, error: str, keyring_age_seconds: float | None, usable_for_seconds: float) -> None:
        """A read of the secret failed; the last good keyring (if any) is usable for ``usable_for_seconds`` more."""

    def refreshed_after_failures(self, failed_attempts: int) -> None:
        """The secret was read again after ``failed_attempts`` failed reads."""

    def stale_served(self) -> None:
        """A request was authenticated against a keyring whose refresh failed."""


class _NoSignals:
    def refresh_failed(self, error: str, keyring_age_seconds: float | None, usable_for_seconds: float) -> None:
        pass

    def refreshed_after_failures(self, failed_attempts: int) -> None:
        pass

    def stale_served(self) -> None:
        pass


@dataclass(frozen=True)
class _Held:
    """A keyring read, and until when (monotonic seconds) it is fresh and usable: replaced whole, so a reader on
    another thread never sees one read's keyring with another's times."""

    keyring: Keyring
    read_at: float
    fresh_until: float
    usable_until: float


class SecretKeyring:
    """The keyring secret as a container holds it: fresh for ``ttl_seconds``, then served stale for at most
    ``stale_seconds`` more while reads fail, read at most once a second, one read at a time (module docstring)."""

    def __init__(
        self,
        secret_name: str,
        ttl_seconds: int,
        stale_seconds: int = 0,
        fetch: Callable[[str], object] | None = None,
        signals: KeyringSignals | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_name = secret_name
        self._ttl_seconds = ttl_seconds
        self._stale_seconds = stale_seconds
        self._fetch = fetch or _secrets_manager_fetch()
        self._signals = signals or _NoSignals()
        self._clock = clock
        self._held: _Held | None = None
        self._lock = threading.Lock()  # one read at a time; threads (make run) that find it taken serve stale
        self._next_attempt_at = float("-inf")
        self._failed_attempts = 0
        self._last_error = ""

    def current(self, retry_after_seconds: int) -> Keyring:
        """The keyring to verify against: fresh, or stale within its window; DeviceKeysUnavailable (503) else."""
        held = self._held
        if held is not None and self._clock() < held.fresh_until:  # every request but one per TTL stops here
            return held.keyring
        if self._lock.acquire(blocking=False):
            try:
                return self._refresh(retry_after_seconds)
            finally:
                self._lock.release()
        # Another thread is reading the secret: a usable keyring is served meanwhile; without one, wait for it.
        held = self._held
        if held is not None and self._clock() < held.usable_until:
            if self._failed_attempts:
                self._signals.stale_served()
            return held.keyring
        with self._lock:
            return self._refresh(retry_after_seconds)

    def _refresh(self, retry_after_seconds: int) -> Keyring:
        # The lock is held.
        now, held = self._clock(), self._held
        if held is not None and now < held.fresh_until:
            return held.keyring  # read by the thread this one waited for
        if now >= self._next_attempt_at:
            keyring = self._attempt(now)
            if keyring is not None:
                return keyring
            now = self._clock()
        if held is not None and now < held.usable_until:
            self._signals.stale_served()
            return held.keyring
        raise DeviceKeysUnavailable(f"the keyring secret could not be read: {self._last_error}", retry_after_seconds)

    def _attempt(self, started: float) -> Keyring | None:
        """One read of the secret: the keyring, or None after counting the failure and scheduling the next try."""
        try:
            keyring = Keyring.from_document(self._fetch(self._secret_name))
        except (KeyringUnreadable, KeyringError) as exc:
            self._failed_attempts += 1
            backoff = min(MAX_REFRESH_BACKOFF_SECONDS, MIN_REFRESH_INTERVAL_SECONDS * 2 ** (self._failed_attempts - 1))
            self._next_attempt_at = started + backoff
            self._last_error = str(exc)
            held, now = self._held, self._clock()
            age = None if held is None else now - held.read_at
            usable_for = 0.0 if held is None else max(0.0, held.usable_until - now)
            self._signals.refresh_failed(self._last_error, age, usable_for)
            return None
        # Fresh from when the read started, not ended: the version read is at least that new, so a revocation is
        # served within the TTL of being written even when the read itself was slow.
        fresh_until = started + self._ttl_seconds
        self._held = _Held(keyring, started, fresh_until, fresh_until + self._stale_seconds)
        self._next_attempt_at = started + MIN_REFRESH_INTERVAL_SECONDS
        if self._failed_attempts:
            self._signals.refreshed_after_failures(self._failed_attempts)
            self._failed_attempts, self._last_error = 0, ""
        return keyring


def _secrets_manager_fetch() -> Callable[[str], object]:
    # botocore is imported on first use: DEVICE_AUTH=off never needs the Secrets Manager client (P2).
    from botocore.exceptions import BotoCoreError, ClientError

    from pipeline.aws_clients import secrets_client

    def fetch(name: str) -> object:
        try:
            text = secrets_client().get_secret_value(SecretId=name)["SecretString"]
        except (BotoCoreError, ClientError, KeyError) as exc:  # KeyError: a binary secret has no SecretString
            raise KeyringUnreadable(f"GetSecretValue failed: {exc}") from exc
        try:
            return json.loads(text)
        except ValueError as exc:
            raise KeyringUnreadable("the keyring secret is not JSON") from exc

    return fetch


def authenticate(authorization: Sequence[str], keyring: SecretKeyring, retry_after_seconds: int) -> str:
    """The authenticated device id of a request: Problem 401/403, or DeviceKeysUnavailable (503). A credential
    that is not shaped like a device key is a 401 before the keyring is asked for, whatever its state."""
    device_key = parse_device_key(bearer_key(authorization))
    return keyring.current(retry_after_seconds).verify_parsed(device_key)


def new_keyring_document(first_key: str) -> dict[str, Any]:
    """A keyring with one generation (``make run`` creates its secret so; CloudFormation generates k1)."""
    return Keyring(1, {1: first_key.encode("utf-8")}, frozenset(), {}).to_document()


def keyring_json(keyring: Keyring) -> str:
    """The secret string: compact, so the revocation list gets the most of the 65,536-byte secret."""
    return json.dumps(keyring.to_document(), separators=(",", ":"))
