"""The code asset both pipeline Lambdas run: the lambdas/ folder, staged as the config asks.

Staging is a pipeline of steps. Each step writes into the staging directory CDK hands out inside
cdk.out (never into lambdas/, which synth must leave untouched), in order:

1. ``copy_source``: the lambdas/ folder, without bytecode caches.
2. ``bundle_powertools`` (only with POWERTOOLS_SOURCE=bundle): the pinned Powertools and its
   pure-Python dependencies, copied from this venv's installed distributions.

A step is ``(config, out_dir) -> None``; a new one (say, compiling bytecode) is appended in
``staging_steps``. Staging runs in-process through CDK's local bundling: no Docker, no network.
When ``copy_source`` is the only step, CDK zips lambdas/ directly and nothing is staged.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra.config import ConfigError, PipelineConfig

LAMBDA_SOURCE = Path(__file__).resolve().parent.parent / "lambdas"
SOURCE_EXCLUDES = ("**/__pycache__", "**/*.pyc")

# What the bundled Powertools imports at run time, beyond what the Lambda Python runtime ships
# (boto3, botocore): its own requirements, and the [tracer] extra (aws-xray-sdk, which needs wrapt).
# Same distributions as requirements-dev.txt's aws-lambda-powertools[tracer] installs.
POWERTOOLS_DISTRIBUTIONS = ("aws-lambda-powertools", "jmespath", "typing-extensions", "aws-xray-sdk", "wrapt")
# Compiled files are built for this machine (x86_64, this Python), not for Lambda's arm64/3.13+,
# so they are left out. The only one is wrapt's optional C extension: wrapt falls back to its
# pure-Python implementation when `wrapt._wrappers` cannot be imported (wrapt/__wrapt__.py);
# tests/infra/test_lambda_asset.py imports the bundle without it.
_LEFT_OUT_SUFFIXES = (".pyc", ".so", ".pyd", ".c", ".h")

Step = Callable[[PipelineConfig, Path], None]


def lambda_code(config: PipelineConfig) -> lambda_.Code:
    """The ``lambda_.Code`` of both functions, staged by ``staging_steps(config)``."""
    steps = staging_steps(config)
    if steps == [copy_source]:
        return lambda_.Code.from_asset(str(LAMBDA_SOURCE), exclude=list(SOURCE_EXCLUDES))
    return lambda_.Code.from_asset(
        str(LAMBDA_SOURCE),
        # The hash of what was staged, so a Powertools upgrade alone also ships a new asset.
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled: local staging always succeeds or raises, so CDK never falls back to Docker.
            image=DockerImage.from_registry("local-staging-only"),
            local=_LocalStaging(config, steps),
        ),
    )


def staging_steps(config: PipelineConfig) -> list[Step]:
    """The steps that build the asset directory, in order."""
    steps: list[Step] = [copy_source]
    if config.POWERTOOLS_SOURCE == "bundle":
        installed_powertools_version(config)  # fail at synth, naming the knob, before CDK stages anything
        steps.append(bundle_powertools)
    return steps


def copy_source(config: PipelineConfig, out_dir: Path) -> None:
    """The lambdas/ folder as it is, minus bytecode caches."""
    shutil.copytree(LAMBDA_SOURCE, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def bundle_powertools(config: PipelineConfig, out_dir: Path) -> None:
    """The installed Powertools distributions, pure Python only, at the asset's top level."""
    for name in POWERTOOLS_DISTRIBUTIONS:
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts or file.suffix in _LEFT_OUT_SUFFIXES:
                continue  # console scripts outside site-packages, caches, compiled code
            target = out_dir / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(distribution.locate_file(file))), target)


def installed_powertools_version(config: PipelineConfig) -> str:
    """The installed Powertools version, which must be POWERTOOLS_VERSION: the bundle is that copy."""
    try:
        version = importlib.metadata.version("aws-lambda-powertools")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "POWERTOOLS_SOURCE=bundle needs aws-lambda-powertools installed in this venv (make install)"
        ) from exc
    if version != config.POWERTOOLS_VERSION:
        raise ConfigError(
            f"POWERTOOLS_SOURCE=bundle copies the installed aws-lambda-powertools {version}, but "
            f"POWERTOOLS_VERSION is {config.POWERTOOLS_VERSION}: make them equal"
        )
    return version


@jsii.implements(ILocalBundling)
class _LocalStaging:
    """CDK's local bundling hook: runs the steps into the staging directory CDK gives it."""

    def __init__(self, config: PipelineConfig, steps: Sequence[Step]) -> None:
        self._config = config
        self._steps = list(steps)

    def try_bundle(self, output_dir: str, *args: Any, **options: Any) -> bool:  # noqa: ARG002 (CDK's signature)
        for step in self._steps:
            step(self._config, Path(output_dir))
        return True
