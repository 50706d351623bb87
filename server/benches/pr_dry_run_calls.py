#!/usr/bin/env python3
"""The boto3 side of benches/pr_dry_run.rs: the CloudFormation, SSM and S3 calls that one
stackgate pull-request dry run of a stack with one artifact makes, in the same order,
against the same emulator, and nothing else (no git, no policy, no GitHub).

    pr_dry_run_calls.py --endpoint URL [--region R] [--poll S]   serve runs from stdin
    pr_dry_run_calls.py --name-ops RECORDING                     name a moto recording's calls

Serving: one JSON object a line on stdin (stack, template, parameters and tags as
[key, value] lists, capabilities, bucket, key, change_set_name, sha), one JSON line back per run:
{"seconds": wall time of the calls, "ops": the operations made, in order, "changes": how
many resource changes the change set listed}. One process
serves every run, so Python's start-up and boto3's import are paid once, as stackgate's
are (it is a running server).

The sequence (as counted from the emulator's recording of one stackgate dry run):
  the gate's lookups (policy/lookup.rs) of each SSM-typed parameter: DescribeParameters
    (Name Equals), GetParameters;
  the review (pipeline/review.rs, review/baseline.rs): the proposed template's lookups
    again, DescribeStacks(name), GetTemplate(id), DescribeParameters of each value the
    live stack resolved (an AMI id: no such parameter, so no GetParameters);
  the plan (cloud/deployer/compare.rs prepare): DescribeStacks(name), HeadBucket
    (ExpectedBucketOwner), HeadObject (ChecksumMode=ENABLED) of the artifact, CreateChangeSet
    (UPDATE), DescribeChangeSet every `poll` s until CREATE_COMPLETE;
  discard: DeleteChangeSet.
GetCallerIdentity is made once, before the first run: stackgate keeps the account from
its first call (the deploy before the benchmark).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.parse


def op_of(entry: dict) -> str:
    """The AWS operation a recorded request is: its Action (query protocol), its
    X-Amz-Target (JSON protocol), or for S3 the REST method and path."""
    headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    auth = headers.get("authorization", "")
    service = ""
    if "Credential=" in auth:
        parts = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        service = parts[3] if len(parts) > 3 else ""
    if service != "s3":
        form = dict(urllib.parse.parse_qsl(body))
        if "Action" in form:
            return form["Action"]
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(entry["url"]).query))
        return query.get("Action", f"{service}:{entry['method']}")
    url = urllib.parse.urlsplit(entry["url"])
    path = [p for p in url.path.split("/") if p]
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    method = entry["method"]
    if len(path) <= 1:
        sub = next((q for q in ("versioning", "encryption", "publicAccessBlock", "versions")
                    if q in query), "")
        names = {("HEAD", ""): "HeadBucket", ("PUT", ""): "CreateBucket",
                 ("GET", ""): "ListObjects", ("PUT", "versioning"): "PutBucketVersioning",
                 ("PUT", "encryption"): "PutBucketEncryption",
                 ("PUT", "publicAccessBlock"): "PutPublicAccessBlock",
                 ("GET", "versions"): "ListObjectVersions"}
        return names.get((method, sub), f"s3:{method} bucket?{sub}")
    return {"HEAD": "HeadObject", "GET": "GetObject", "PUT": "PutObject",
            "DELETE": "DeleteObject"}.get(method, f"s3:{method} object")


def form_list(form: dict, prefix: str, fields: tuple[str, ...]) -> list:
    """`Prefix.member.N.Field` entries of a query-protocol form, in N order."""
    out = []
    n = 1
    while f"{prefix}.member.{n}.{fields[0]}" in form or f"{prefix}.member.{n}" in form:
        if len(fields) == 1 and fields[0] == "":
            out.append(form[f"{prefix}.member.{n}"])
        else:
            out.append([form.get(f"{prefix}.member.{n}.{f}", "") for f in fields])
        n += 1
    return out


def name_ops(path: str) -> None:
    """One JSON line: the recording's operations in order, the CreateChangeSet's
    parameters, tags and capabilities, and the artifact HeadObject's bucket and key."""
    ops, change_set, artifact, ssm = [], None, None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            entry = json.loads(line)
            op = op_of(entry)
            ops.append(op)
            if op == "DescribeParameters" and not ssm:
                body = entry.get("body") or ""
                if entry.get("body_encoded"):
                    body = base64.b64decode(body).decode("utf-8")
                ssm = [v for f in json.loads(body).get("ParameterFilters", [])
                       for v in f.get("Values", [])]
            if op == "CreateChangeSet" and change_set is None:
                body = entry.get("body") or ""
                if entry.get("body_encoded"):
                    body = base64.b64decode(body).decode("utf-8")
                form = dict(urllib.parse.parse_qsl(body))
                change_set = {
                    "parameters": form_list(form, "Parameters", ("ParameterKey", "ParameterValue")),
                    "tags": form_list(form, "Tags", ("Key", "Value")),
                    "capabilities": form_list(form, "Capabilities", ("",)),
                    "template_body": "TemplateBody" in form,
                    "type": form.get("ChangeSetType"),
                }
            if op == "HeadObject" and artifact is None:
                path_ = [urllib.parse.unquote(p)
                         for p in urllib.parse.urlsplit(entry["url"]).path.split("/") if p]
                artifact = {"bucket": path_[0], "key": "/".join(path_[1:])}
    print(json.dumps({"ops": ops, "change_set": change_set, "artifact": artifact,
                      "ssm": ssm}))


class DryRun:
    def __init__(self, endpoint: str, region: str, poll: float):
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(region_name=region)
        self.cfn = session.client("cloudformation", endpoint_url=endpoint)
        self.sts = session.client("sts", endpoint_url=endpoint)
        # Path-style, as stackgate's S3 client is with an endpoint URL.
        self.s3 = session.client("s3", endpoint_url=endpoint,
                                 config=Config(s3={"addressing_style": "path"}))
        self.ssm = session.client("ssm", endpoint_url=endpoint)
        self.poll = poll
        self.changes = 0
        self.account = self.sts.get_caller_identity()["Account"]

    def lookup(self, ops: list[str], name: str, get: bool = True) -> None:
        ops.append("DescribeParameters")
        found = self.ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}],
            MaxResults=50)["Parameters"]
        if get and found:
            ops.append("GetParameters")
            self.ssm.get_parameters(Names=[name], WithDecryption=False)

    def run(self, job: dict) -> list[str]:
        ops: list[str] = []
        name = job["stack"]

        # The gate, then the review's proposed side: the SSM-typed parameters' values.
        for _ in range(2):
            for parameter in job["ssm"]:
                self.lookup(ops, parameter)
        # The review's live side: the stack's template and resolved parameters.
        ops.append("DescribeStacks")
        stack = self.cfn.describe_stacks(StackName=name)["Stacks"][0]
        ops.append("GetTemplate")
        self.cfn.get_template(StackName=stack["StackId"])
        for p in stack.get("Parameters", []):
            if p["ParameterKey"] in job["ssm_keys"]:
                self.lookup(ops, p.get("ResolvedValue", p["ParameterValue"]))

        # The plan: the stack, the artifact bucket and object, the change set.
        ops.append("DescribeStacks")
        self.cfn.describe_stacks(StackName=name)
        account = self.account
        ops.append("HeadBucket")
        self.s3.head_bucket(Bucket=job["bucket"], ExpectedBucketOwner=account)
        ops.append("HeadObject")
        self.s3.head_object(Bucket=job["bucket"], Key=job["key"], ExpectedBucketOwner=account,
                            ChecksumMode="ENABLED")
        parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in job["parameters"]]
        ops.append("CreateChangeSet")
        out = self.cfn.create_change_set(
            StackName=name, ChangeSetName=job["change_set_name"], ChangeSetType="UPDATE",
            TemplateBody=job["template"], Parameters=parameters,
            Capabilities=job["capabilities"],
            Tags=[{"Key": k, "Value": v} for k, v in job["tags"]],
            Description=f"stackgate {job['sha']}")
        change_set = out["Id"]
        while True:
            ops.append("DescribeChangeSet")
            d = self.cfn.describe_change_set(ChangeSetName=change_set)
            if d["Status"] == "CREATE_COMPLETE":
                break
            if d["Status"] == "FAILED":
                raise SystemExit(f"change set failed: {d.get('StatusReason')}")
            time.sleep(self.poll)
        self.changes = len(d.get("Changes", []))

        # Discard: the change set is never executed.
        ops.append("DeleteChangeSet")
        self.cfn.delete_change_set(ChangeSetName=change_set)
        return ops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--poll", type=float, default=0.1)
    ap.add_argument("--name-ops")
    args = ap.parse_args()
    if args.name_ops:
        name_ops(args.name_ops)
        return
    runner = DryRun(args.endpoint, args.region, args.poll)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        t0 = time.perf_counter()
        ops = runner.run(job)
        seconds = time.perf_counter() - t0
        print(json.dumps({"seconds": seconds, "ops": ops, "changes": runner.changes}), flush=True)


if __name__ == "__main__":
    main()
