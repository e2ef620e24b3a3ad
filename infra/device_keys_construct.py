"""The device keyring (DEVICE_AUTH=on): one Secrets Manager secret holding the signing keys by generation and the
revoked devices (pipeline/device_auth.py). Only the ingest function reads it; operators change it with
`python -m tools.ops.devices` under their own IAM identity."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import PipelineConfig

# CloudFormation generates generation 1's signing key into "k1" at deploy time, so no key is ever in the template,
# in cdk.out or in a pipeline log: 64 characters of letters and digits, about 381 bits.
#
# NEVER CHANGE WHAT GENERATES IT (this block, the construct ids, or a Name for the secret). CloudFormation owns the
# secret's value through GenerateSecretString: a later deploy in which that property differs makes it generate a
# new value, a keyring with generation 1 only (CloudFormation User Guide, "AWS::SecretsManager::Secret",
# GenerateSecretString), which wipes every later generation and every revocation: every device key in the
# field stops verifying at once. A changed logical id or Name replaces the secret with a new one, with the same
# result (RETAIN_ON_UPDATE_OR_DELETE keeps the old secret, but the ingest reads the new one). The format-1
# template below is therefore spelled out, not derived from pipeline/device_auth.py's KEYRING_FORMAT: a later
# format must read format 1 (what every deployed keyring is) and be written by tools/ops/devices.py, never here.
# tests/infra/test_keyring_pinned.py compares the synthesized block with tests/infra/pinned_keyring.json.
FIRST_KEY_FIELD = "k1"
FIRST_KEY_CHARS = 64
FIRST_KEYRING_TEMPLATE = {"format": 1, "current": 1, "retired": [], "revoked": {}}


class DeviceKeys(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Keyring",
            description=f"ingest-pipeline-{config.STAGE} device keyring: signing keys by generation and revoked "
            "devices (python -m tools.ops.devices)",
            generate_secret_string=secretsmanager.SecretStringGenerator(  # pinned: see FIRST_KEY_FIELD
                secret_string_template=json.dumps(FIRST_KEYRING_TEMPLATE),
                generate_string_key=FIRST_KEY_FIELD,
                password_length=FIRST_KEY_CHARS,
                exclude_punctuation=True,
                include_space=False,
            ),
            # Every device key in the field verifies against this secret: replacing or deleting it with the stack
            # would lock the fleet out. Kept like the payload bucket (deleted if its first create rolls back),
            # unless DESTROY_ON_REMOVE=true. Encrypted with Secrets Manager's AWS managed key (aws/secretsmanager).
            removal_policy=RemovalPolicy.DESTROY
            if config.DESTROY_ON_REMOVE
            else RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """GetSecretValue (and DescribeSecret) on this one secret."""
        self.secret.grant_read(grantee)
