"""What stackgate's `[[targets]]` rely on in the emulator: moto keeps AWS accounts apart by
the credentials that STS AssumeRole returns. The assumed role acts in the role's account
(GetCallerIdentity says so, with the session name), a stack made there is seen there only,
and the RoleARN a change set names is the stack's service role. No patch is needed for
this; the test says so, with all patches and with none.

    .local/venv/bin/python -m pytest tests/python/emulator/test_accounts.py -q
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from test_moto_patches import REGION, Emulator

PROD, DEV = "111111111111", "222222222222"
QUEUE = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}


@pytest.fixture(scope="module", params=["all", "none"])
def emulator(request, tmp_path_factory: pytest.TempPathFactory):
    e = Emulator(request.param, tmp_path_factory.mktemp("moto-accounts"))
    yield e
    e.stop()


def assumed(emulator: Emulator, account: str, service: str) -> Any:
    creds = emulator.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/stackgate-deployer",
        RoleSessionName="stackgate-job-42",
        ExternalId="prod-external-id",
    )["Credentials"]
    return boto3.client(
        service, endpoint_url=emulator.url, region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def names(cf: Any) -> list[str]:
    return [s["StackName"] for s in cf.describe_stacks()["Stacks"]]


def test_an_assumed_role_acts_in_its_own_account_only(emulator: Emulator) -> None:
    me = emulator.client("sts").get_caller_identity()
    assert me["Account"] not in (PROD, DEV)
    who = assumed(emulator, PROD, "sts").get_caller_identity()
    assert who["Account"] == PROD
    assert who["Arn"] == f"arn:aws:sts::{PROD}:assumed-role/stackgate-deployer/stackgate-job-42"
    assert assumed(emulator, DEV, "sts").get_caller_identity()["Account"] == DEV

    prod = assumed(emulator, PROD, "cloudformation")
    prod.create_change_set(StackName="web", ChangeSetName="cs-1", TemplateBody=json.dumps(QUEUE),
                           ChangeSetType="CREATE",
                           RoleARN=f"arn:aws:iam::{PROD}:role/cfn-exec")
    prod.execute_change_set(StackName="web", ChangeSetName="cs-1")
    stack = prod.describe_stacks(StackName="web")["Stacks"][0]
    assert stack["StackId"].startswith(f"arn:aws:cloudformation:{REGION}:{PROD}:stack/web/")
    assert stack["RoleARN"] == f"arn:aws:iam::{PROD}:role/cfn-exec"
    # The other account and the caller's own see nothing of it.
    assert "web" not in names(assumed(emulator, DEV, "cloudformation"))
    assert "web" not in names(emulator.client("cloudformation"))
    with pytest.raises(ClientError):
        assumed(emulator, DEV, "cloudformation").describe_stacks(StackName="web")
