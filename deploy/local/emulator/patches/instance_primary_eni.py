"""Patch instance_primary_eni: an instance's primary network interface is deleted when the
instance terminates."""

from __future__ import annotations

import copy
import functools
from typing import Any


def apply() -> None:
    """An instance's primary network interface is deleted when the instance terminates.

    Gap: Instance.prep_nics ({src}/ec2/models/instances.py) creates the primary network
    interface of an instance launched without a NetworkInterfaces specification (as
    CloudFormation's AWS::EC2::Instance does: Instance.create_from_cloudformation_json ->
    run_instances with SubnetId) with delete_on_termination=False, so Instance.terminate
    keeps it: after the stack is deleted, DescribeNetworkInterfaces still lists it "in-use",
    attached to a terminated instance, in a subnet that no longer exists.
    In AWS that interface has Attachment.DeleteOnTermination true and is deleted with the
    instance (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-eni.html, "Primary
    network interface"); TerminateInstances is idempotent: terminating a terminated
    instance again succeeds
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_TerminateInstances.html).

    Fix: after prep_nics, the primary interface it created for a launch without a
    NetworkInterfaces specification gets delete_on_termination=True, so Instance.terminate
    deletes it; an explicit specification keeps moto's handling. Instance.terminate of a
    terminated instance does nothing (moto would delete the interface a second time and
    fail with InvalidNetworkInterfaceID.NotFound).
    """
    from moto.ec2.models.instances import Instance

    original_prep_nics = Instance.prep_nics

    @functools.wraps(original_prep_nics)
    def prep_nics(self: Any, nic_spec: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
        original_prep_nics(self, nic_spec, *args, **kwargs)
        primary = self.nics.get(0)
        if not nic_spec and primary is not None:
            primary.delete_on_termination = True

    original_terminate = Instance.terminate

    @functools.wraps(original_terminate)
    def terminate(self: Any) -> Any:
        if self._state.name == "terminated":
            return copy.copy(self._state)
        return original_terminate(self)

    Instance.prep_nics = prep_nics
    Instance.terminate = terminate
