"""The payload bucket (and the bucket that receives its server access logs)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import PipelineConfig
from infra.lake_table import COMPACTED_PREFIX


def bucket_removal_policy(config: PipelineConfig) -> RemovalPolicy:
    """Every bucket of the stack: RetainExceptOnCreate, kept on update and delete, but a failed first
    create removes it, so a rolled-back deploy leaves no orphaned buckets behind (AWS CloudFormation
    User Guide, "DeletionPolicy attribute"; CloudFormation has no such UpdateReplacePolicy: that stays
    Retain). DESTROY_ON_REMOVE (dev only) deletes them with the stack."""
    return RemovalPolicy.DESTROY if config.DESTROY_ON_REMOVE else RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE


class PayloadStorage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, construct_id)
        destroy = config.DESTROY_ON_REMOVE
        removal = bucket_removal_policy(config)

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(config.ACCESS_LOG_EXPIRATION_DAYS))],
            removal_policy=removal,
            auto_delete_objects=destroy,
        )

        rules = [
            s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7))
        ]
        # Expiration counts from each object's creation ("Lifecycle configuration elements": the days
        # after creation, rounded up to the next midnight UTC). Raw keys always continue with dt=, so
        # the rule never reaches compacted/, even with an empty OBJECT_PREFIX.
        if config.RAW_RETENTION_DAYS:
            rules.append(
                s3.LifecycleRule(
                    id="expire-payloads",
                    prefix=f"{config.OBJECT_PREFIX}dt=",
                    expiration=Duration.days(config.RAW_RETENTION_DAYS),
                )
            )
        if config.COMPACTED_RETENTION_DAYS:
            rules.append(
                s3.LifecycleRule(
                    id="expire-compacted",
                    prefix=COMPACTED_PREFIX,
                    expiration=Duration.days(config.COMPACTED_RETENTION_DAYS),
                )
            )
        self.bucket = s3.Bucket(
            self,
            "Payloads",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="payloads/",
            lifecycle_rules=rules,
            removal_policy=removal,
            auto_delete_objects=destroy,
            # S3 request metrics (AllRequests, 5xxErrors, ...) for the raw payloads only: the consumer's PUTs, and
            # the SlowDown that botocore retries silently. Billed as CloudWatch custom metrics (priced in
            # tools/models/cost.py); the monitoring construct draws the 5xx share under this filter id.
            metrics=[s3.BucketMetrics(id="payloads", prefix=config.OBJECT_PREFIX or None)],
        )
