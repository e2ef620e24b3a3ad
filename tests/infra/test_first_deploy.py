"""The knobs that let a blocked first deploy through (docs/DEPLOY.md), as templates:
RESERVED_CONCURRENCY, POWERTOOLS_SOURCE, API_GATEWAY_CLOUDWATCH_ROLE, and RetainExceptOnCreate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from infra.config import ConfigError, PipelineConfig
from infra.lambda_asset import LAMBDA_SOURCE
from tests.infra import build, synth

RELAXED: dict[str, Any] = {
    "RESERVED_CONCURRENCY": "off",
    "POWERTOOLS_SOURCE": "bundle",
    "API_GATEWAY_CLOUDWATCH_ROLE": "false",
}
# The API Gateway account setting and its role are one per region, shared by every REST API there,
# so CDK's default RETAIN stays: deleting the role on a rolled-back create would leave the region's
# setting pointing at a deleted role. Their names are generated, so they never block a retry.
ACCOUNT_LEVEL = {"AWS::ApiGateway::Account", "AWS::IAM::Role"}


def source_files() -> dict[str, float]:
    return {
        str(p.relative_to(LAMBDA_SOURCE)): p.stat().st_mtime
        for p in LAMBDA_SOURCE.rglob("*")
        if "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def default() -> Template:
    return synth()


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Template, Path, dict[str, float]]:
    """Every first-deploy knob turned the other way, synthesized to disk as `cdk synth` does."""
    before = source_files()
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build(outdir=str(outdir), **RELAXED)
    app.synth()
    return stack, Template.from_stack(stack), outdir, before


def functions(template: Template) -> dict[str, dict[str, Any]]:
    found = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": Match.string_like_regexp("_handler.lambda_handler$")}}
    )
    assert len(found) == 2
    return {r["Properties"]["Handler"]: r["Properties"] for r in found.values()}


def asset_dir(template: Template, outdir: Path) -> Path:
    [key] = {props["Code"]["S3Key"] for props in functions(template).values()}  # one asset for both
    return outdir / f"asset.{key.removesuffix('.zip')}"


# --- RESERVED_CONCURRENCY ----------------------------------------------------------------------------


def test_by_default_the_consumer_reserves_its_pool(default: Template) -> None:
    assert functions(default)["consumer_handler.lambda_handler"]["ReservedConcurrentExecutions"] == 10


def test_reserved_concurrency_off_reserves_nothing_and_the_mapping_still_bounds_the_pool(relaxed: Any) -> None:
    _, template, _, _ = relaxed
    assert "ReservedConcurrentExecutions" not in functions(template)["consumer_handler.lambda_handler"]
    [mapping] = template.find_resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 10}


# --- POWERTOOLS_SOURCE ---------------------------------------------------------------------------------


def test_by_default_both_functions_use_the_public_layer(default: Template) -> None:
    parameters = {
        name
        for name, p in default.to_json()["Parameters"].items()
        if p.get("Default", "").startswith("/aws/service/powertools/")
    }
    assert len(parameters) == 1
    assert [props["Layers"] for props in functions(default).values()] == [[{"Ref": p} for p in parameters]] * 2


def test_bundled_powertools_means_no_layer_and_the_pinned_release_in_the_asset(relaxed: Any) -> None:
    _, template, outdir, _ = relaxed
    assert all("Layers" not in props for props in functions(template).values())
    assert not [
        p
        for p in template.to_json()["Parameters"].values()
        if p.get("Default", "").startswith("/aws/service/powertools/")
    ]
    asset = asset_dir(template, outdir)
    assert (asset / "ingest_handler.py").is_file() and (asset / "consumer_handler.py").is_file()
    assert (asset / "aws_lambda_powertools" / "__init__.py").is_file()
    assert (asset / f"aws_lambda_powertools-{PipelineConfig().POWERTOOLS_VERSION}.dist-info").is_dir()
    assert (asset / "aws_xray_sdk").is_dir() and (asset / "wrapt").is_dir()


def test_the_bundle_holds_no_compiled_code_and_imports_without_it(relaxed: Any) -> None:
    # Compiled files are built for this machine, not Lambda's arm64 Python 3.13/3.14.
    _, template, outdir, _ = relaxed
    asset = asset_dir(template, outdir)
    assert [p.name for p in asset.rglob("*") if p.suffix in (".so", ".pyd", ".pyc")] == []
    # As on Lambda: the asset first on the path, then what the runtime provides (boto3: from this venv).
    script = (
        f"import sys; sys.path[:0] = [{str(asset)!r}]; sys.path.append({_site_packages()!r})\n"
        "import ingest_handler, consumer_handler, aws_lambda_powertools, wrapt.__wrapt__ as w\n"
        # The Tracer as observability.py builds it when TRACING is on (off, it is a stand-in with no SDK).
        "from aws_lambda_powertools import Tracer; tracer = Tracer(patch_modules=('botocore',))\n"
        "print(aws_lambda_powertools.__file__, w._using_c_extension, tracer.capture_method(lambda x: x + 1)(1))\n"
    )
    env = {
        **os.environ,
        "POWERTOOLS_SERVICE_NAME": "test",
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
        "BUCKET_NAME": "b",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        cwd=outdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    powertools_file, c_extension, traced = result.stdout.split()
    assert powertools_file.startswith(str(asset)) and (c_extension, traced) == ("False", "2")


def test_synth_leaves_the_lambdas_folder_untouched(relaxed: Any) -> None:
    *_, before = relaxed
    assert source_files() == before


def test_bundling_another_powertools_than_the_installed_one_fails_synth_naming_the_knob() -> None:
    with pytest.raises(ConfigError, match="POWERTOOLS_VERSION is 3.36.0"):
        build(POWERTOOLS_SOURCE="bundle", POWERTOOLS_VERSION="3.36.0")


# --- API_GATEWAY_CLOUDWATCH_ROLE -----------------------------------------------------------------------


def test_by_default_the_stack_sets_the_regions_api_gateway_logging_role(default: Template) -> None:
    default.resource_count_is("AWS::ApiGateway::Account", 1)
    roles = default.find_resources("AWS::IAM::Role")
    assert (
        sum(
            "apigateway.amazonaws.com" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
            for r in roles.values()
        )
        == 1
    )


def test_role_off_leaves_the_accounts_role_alone_and_keeps_the_stage_logging(relaxed: Any) -> None:
    # The stage's logging needs the account's role; make preflight blocks the deploy when it is missing.
    _, template, _, _ = relaxed
    template.resource_count_is("AWS::ApiGateway::Account", 0)
    roles = template.find_resources("AWS::IAM::Role")
    assert not [r for r in roles.values() if "apigateway.amazonaws.com" in json.dumps(r["Properties"])]
    [stage] = template.find_resources("AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["MethodSettings"][0]["LoggingLevel"] == "ERROR"
    assert "AccessLogSetting" in stage["Properties"]


# --- removal policy ------------------------------------------------------------------------------------


def test_retained_resources_are_retain_except_on_create(default: Template) -> None:
    resources = default.to_json()["Resources"]
    buckets = {lid: r for lid, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert len(buckets) == 3  # payloads, their access logs, Athena query results
    for bucket in buckets.values():
        # CloudFormation has no RetainExceptOnCreate for replacement: a replaced bucket is kept.
        assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    plain_retain = {r["Type"] for r in resources.values() if r.get("DeletionPolicy") == "Retain"}
    assert plain_retain == ACCOUNT_LEVEL


# --- the relaxed template passes the same outside rule sets ------------------------------------------------


def test_the_relaxed_template_has_no_cdk_nag_findings_and_passes_cfn_lint(relaxed: Any) -> None:
    from cfnlint.api import lint

    stack, template, _, _ = relaxed
    findings = Annotations.from_stack(stack)
    assert [e.entry.data for e in findings.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))] == []
    assert [w.entry.data for w in findings.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))] == []
    rule_ids = {m.rule.id for m in lint(json.dumps(template.to_json()), regions=["us-east-1"])}
    assert rule_ids <= {"W3005"}, rule_ids


# --- the knobs themselves --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("RESERVED_CONCURRENCY", "sometimes", "RESERVED_CONCURRENCY must be on or off"),
        ("POWERTOOLS_SOURCE", "pip", "POWERTOOLS_SOURCE must be layer or bundle"),
        ("API_GATEWAY_CLOUDWATCH_ROLE", "perhaps", "API_GATEWAY_CLOUDWATCH_ROLE='perhaps' is not a boolean"),
    ],
)
def test_invalid_first_deploy_knobs_are_refused_by_name(knob: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.resolve({}, {knob: value})


def test_first_deploy_knobs_resolve_environment_over_context_over_default() -> None:
    assert (PipelineConfig().RESERVED_CONCURRENCY, PipelineConfig().POWERTOOLS_SOURCE) == ("on", "layer")
    assert PipelineConfig().API_GATEWAY_CLOUDWATCH_ROLE is True
    context = {"RESERVED_CONCURRENCY": "off", "POWERTOOLS_SOURCE": "bundle", "API_GATEWAY_CLOUDWATCH_ROLE": False}
    from_context = PipelineConfig.resolve(context, {})
    assert (from_context.RESERVED_CONCURRENCY, from_context.POWERTOOLS_SOURCE) == ("off", "bundle")
    assert from_context.API_GATEWAY_CLOUDWATCH_ROLE is False and from_context.consumer_reservation is None
    from_env = PipelineConfig.resolve(context, {"RESERVED_CONCURRENCY": "on", "API_GATEWAY_CLOUDWATCH_ROLE": "true"})
    assert from_env.consumer_reservation == 10 and from_env.API_GATEWAY_CLOUDWATCH_ROLE is True


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]
