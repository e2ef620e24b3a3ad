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
The ingest reads the keyring through Powertools Parameters (``SecretsProvider.get``), whose in-memory cache
serves it for ``DEVICE_REVOCATION_TTL_SECONDS`` and then fetches it again, synchronously, on the next request
("Adjusting cache TTL", https://docs.aws.amazon.com/powertools/python/latest/utilities/parameters/): so a
revocation reaches every warm container within the TTL, at one GetSecretValue per container per TTL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

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
        match = _DEVICE_KEY.fullmatch(device_key)
        if match is None:
            raise unauthorized(
                f"the Authorization header must be 'Bearer {KEY_PREFIX}.<device id>.<generation>.<signature>'",
                credential_sent=True,
            )
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


class SecretKeyring:
    """The keyring secret, read through Powertools Parameters and cached for ``ttl_seconds``."""

    def __init__(self, secret_name: str, ttl_seconds: int, fetch: Callable[[str, int], object] | None = None) -> None:
        self._secret_name = secret_name
        self._ttl_seconds = ttl_seconds
        self._fetch = fetch or _powertools_fetch()
        self._document: object = None
        self._keyring: Keyring | None = None

    def current(self, retry_after_seconds: int) -> Keyring:
        """The keyring as of at most ``ttl_seconds`` ago; DeviceKeysUnavailable if it cannot be read."""
        try:
            document = self._fetch(self._secret_name, self._ttl_seconds)
        except KeyringUnreadable as exc:
            raise DeviceKeysUnavailable(f"the keyring secret could not be read: {exc}", retry_after_seconds) from exc
        if document is not self._document or self._keyring is None:
            # Powertools returns the same transformed object until the cache expires: parse it once per fetch.
            try:
                self._keyring = Keyring.from_document(document)
            except KeyringError as exc:
                raise DeviceKeysUnavailable(str(exc), retry_after_seconds) from exc
            self._document = document
        return self._keyring


def _powertools_fetch() -> Callable[[str, int], object]:
    # Imported on first use: Powertools Parameters loads boto3, which DEVICE_AUTH=off never needs (P2).
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    from pipeline.aws_clients import secrets_client

    provider = SecretsProvider(boto3_client=secrets_client())

    def fetch(name: str, max_age: int) -> object:
        try:
            return provider.get(name, max_age=max_age, transform="json")
        except (GetParameterError, TransformParameterError) as exc:  # every SDK failure is a GetParameterError
            raise KeyringUnreadable(str(exc)) from exc

    return fetch


def authenticate(authorization: Sequence[str], keyring: SecretKeyring, retry_after_seconds: int) -> str:
    """The authenticated device id of a request: Problem 401/403, or DeviceKeysUnavailable (503)."""
    device_key = bearer_key(authorization)  # malformed headers never cost a secret read
    return keyring.current(retry_after_seconds).verify(device_key)


def new_keyring_document(first_key: str) -> dict[str, Any]:
    """A keyring with one generation (``make run`` creates its secret so; CloudFormation generates k1)."""
    return Keyring(1, {1: first_key.encode("utf-8")}, frozenset(), {}).to_document()


def keyring_json(keyring: Keyring) -> str:
    """The secret string: compact, so the revocation list gets the most of the 65,536-byte secret."""
    return json.dumps(keyring.to_document(), separators=(",", ":"))
