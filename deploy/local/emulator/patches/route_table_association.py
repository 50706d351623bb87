"""Patch route_table_association: a CloudFormation SubnetRouteTableAssociation associates the
subnet with the route table."""

from __future__ import annotations

from typing import Any

from .shared import ASSOCIATION_ID, disassociate_route_table


def apply() -> None:
    """A CloudFormation SubnetRouteTableAssociation associates the subnet with the route table.

    Gap: SubnetRouteTableAssociation.create_from_cloudformation_json
    ({src}/ec2/models/subnets.py) calls SubnetBackend.create_subnet_association, which only
    records the pair in subnet_associations. DescribeRouteTables reads
    RouteTable._associations, filled by RouteTableBackend.associate_route_table
    ({src}/ec2/models/route_tables.py), so the route table shows no association with the
    subnet; the resource's physical id is the route table's id, and it has no delete.
    AWS associates the subnet with the route table (EC2 AssociateRouteTable): the table lists
    the association, whose id (rtbassoc-...) is the resource's physical id and Ref value, and
    deleting the resource disassociates the subnet (EC2 DisassociateRouteTable)
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ec2-subnetroutetableassociation.html).

    Fix: create through associate_route_table and use the association id as the physical
    id; delete through disassociate_route_table (delete_from_cloudformation_json, and the
    delete_order handler). An association that is already gone counts as deleted.
    """
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.subnets import SubnetRouteTableAssociation

    original_physical_id = SubnetRouteTableAssociation.physical_resource_id

    def create_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any,
                                        account_id: str, region_name: str, **kwargs: Any) -> Any:
        properties = cloudformation_json["Properties"]
        route_table_id, subnet_id = properties["RouteTableId"], properties["SubnetId"]
        association_id = ec2_backends[account_id][region_name].associate_route_table(
            route_table_id, subnet_id=subnet_id)
        association = cls(route_table_id, subnet_id)
        setattr(association, ASSOCIATION_ID, association_id)
        return association

    def delete_from_cloudformation_json(cls: Any, resource_name: str, cloudformation_json: Any,
                                        account_id: str, region_name: str) -> None:
        # resource_name: the physical id, i.e. the association id
        if resource_name and resource_name.startswith("rtbassoc-"):
            disassociate_route_table(ec2_backends[account_id][region_name], resource_name)

    def physical_resource_id(self: Any) -> str:
        return getattr(self, ASSOCIATION_ID, None) or original_physical_id.fget(self)

    SubnetRouteTableAssociation.create_from_cloudformation_json = classmethod(
        create_from_cloudformation_json)
    SubnetRouteTableAssociation.delete_from_cloudformation_json = classmethod(
        delete_from_cloudformation_json)
    SubnetRouteTableAssociation.physical_resource_id = property(physical_resource_id)
