"""moto server, plus the EKS access-entry API that moto 5.2 does not emulate.

Run with the sandbox venv's python, with moto_server's arguments (`-H 127.0.0.1 -p PORT`).
moto answers CreateAccessEntry and the other access-entry calls with a 404 HTML page; this
adds them to moto's own EKS service (same routing from the botocore model, same error
shapes), in memory beside its clusters:

    CreateAccessEntry, DescribeAccessEntry, ListAccessEntries, DeleteAccessEntry,
    AssociateAccessPolicy, ListAssociatedAccessPolicies, DisassociateAccessPolicy

An entry belongs to its cluster: when the cluster is gone, so are its entries (as on EKS).
Not emulated: UpdateAccessEntry, access policies other than by ARN, EC2_LINUX-type entries'
special rules. scripts/kube-standin.py reads these entries to decide who may use the
cluster's Kubernetes API, as EKS does.

It also makes S3's conditional writes atomic, as they are on S3 (see S3_WRITES below),
answers GetBucketVersioning in S3's shape, names the sandbox's caller with the IAM user ARN
STS gives (`arn:aws:iam::123456789012:user/moto`, not moto's `arn:aws:sts::...:user/moto`), and
gives RDS cluster endpoints one identifier per account and region, as RDS does.

EKS UpdateClusterConfig behaves as on EKS for what pwless sends (see update_cluster_config
below): one kind of update per call, the endpoint flags merged into the cluster's VPC
configuration (moto replaced it whole, losing the subnets), a request that changes nothing
refused, and the authentication mode kept (from CreateCluster too) and moved one way only. DescribeCluster
reports the cluster's VPC (`vpcId`), as EKS does.
TagResource, UntagResource and ListTagsForResource take a managed node group's ARN too, as
on EKS (moto 5.2.5 answered not found).
Every cluster and node group update (UpdateClusterConfig, UpdateClusterVersion,
UpdateNodegroupConfig, UpdateNodegroupVersion) answers with an update, as EKS does (moto answered
UpdateClusterConfig with the cluster, and had no version updates), `InProgress` for
MOTO_EKS_UPDATE_SECONDS (default 1), then `Successful`, as DescribeUpdate tells; while one is in
progress its cluster is UPDATING. An update whose type is named in MOTO_EKS_FAILED_UPDATES
(e.g. `VersionUpdate`) ends `Failed` with an error, its cluster back to ACTIVE and unchanged: EKS
says a failed update returns to ACTIVE too, so only DescribeUpdate tells failure from success.
An update sent again with the same client request token is the same update.
Not emulated: publicAccessCidrs, logging, addon updates.

EKS Pod Identity (associations, the agent add-on and EKS Auth's AssumeRoleForPodIdentity) lives
in scripts/moto_pod_identity.py, installed from here.

DeleteNatGateway behaves as on EC2 (see delete_nat_gateway below): the gateway is `deleting`
for a while (MOTO_NAT_DELETE_SECONDS, default 1), still holding its Elastic IP, then `deleted`,
its Elastic IP disassociated and its network interface gone. moto 5.2.5 marked it `deleted` at
once and never let go of the address, so a new NAT gateway for the same Elastic IP failed with
Resource.AlreadyAssociated forever. Not emulated: the hour a deleted gateway stays listed.

Provisioning takes time when MOTO_PROVISION_SECONDS says so (the apply benchmark's realistic
mode; unset, everything is ready at once as moto makes it): e.g.
`eks_cluster=20,eks_nodegroup=6,rds_cluster=10,rds_instance=16,nat_gateway=3` keeps an EKS
cluster CREATING for 20 s after CreateCluster, a node group CREATING, an Aurora cluster and
instance `creating`, a NAT gateway `pending`, then what moto set (see _provisioning below).

ModifyDBCluster turns IAM database authentication on and off (moto stored the flag where
DescribeDBClusters does not read it).

CreateDBCluster and CreateDBSubnetGroup refuse a name in use, as RDS does
(DBClusterAlreadyExistsFault, DBSubnetGroupAlreadyExists); moto 5.2.5 replaced the existing one
in silence, so a create sent twice (its first answer lost) looked like success. DeleteDBCluster
deletes the cluster's automated snapshots, as RDS does unless asked to retain them (moto kept
them, so a cluster made again under the same identifier within the minute failed with
DBClusterSnapshotAlreadyExistsFault on moto's per-minute automated snapshot name).
"""

import datetime
import os
import re
import sys
import threading
import uuid
from urllib.parse import unquote

from moto.core.responses import ActionResult, EmptyResult
from moto.eks import urls
from moto.eks.exceptions import (
    InvalidParameterException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from moto.eks.models import EKSBackend
from moto.eks.responses import EKSResponse
from moto.s3.responses import S3Response
from moto.sts.models import STSBackend
from moto.server import main

ENTRIES = {}  # (account, region, cluster) -> {principal: entry}
LOCK = threading.Lock()


def _policy_prefix(region):
    """EKS accepts only its own partition's access policies ("Associate access policies with
    access entries", Amazon EKS User Guide, and its China edition: arn:aws-cn:eks::aws:...)."""
    partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return f"arn:{partition}:eks::aws:cluster-access-policy/"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _entries(self, cluster):
    """The cluster's entries; raises ResourceNotFound when the cluster is not there."""
    key = (self.current_account, self.region, cluster)
    if cluster not in self.eks_backend.clusters:
        ENTRIES.pop(key, None)
        raise ResourceNotFoundException(
            clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=None,
            message=f"No cluster found for name: {cluster}.")
    return ENTRIES.setdefault(key, {})


def _principal(self):
    return unquote(self._get_param("principalArn"))


def _entry(self, cluster, principal):
    entry = _entries(self, cluster).get(principal)
    if entry is None:
        raise ResourceNotFoundException(
            clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=None,
            message=f"The specified principalArn could not be found. You can view your available access entries with 'list-access-entries'.")
    return entry


def create_access_entry(self):
    cluster = self._get_param("name")
    principal = self._get_param("principalArn")
    if not principal or ":iam::" not in principal or not (":role/" in principal or ":user/" in principal):
        raise InvalidParameterException(clusterName=cluster, message=f"The principalArn parameter format is not valid: {principal}")
    with LOCK:
        entries = _entries(self, cluster)
        if principal in entries:
            raise ResourceInUseException(
                clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=None,
                message=f"The specified access entry resource is already in use on this cluster.")
        entry_type = self._get_param("type") or "STANDARD"
        entries[principal] = {
            "clusterName": cluster,
            "principalArn": principal,
            "kubernetesGroups": self._get_param("kubernetesGroups") or [],
            "accessEntryArn": f"{_policy_prefix(self.region).split(':eks:')[0]}:eks:{self.region}:{self.current_account}:access-entry/{cluster}/{uuid.uuid4()}",
            "createdAt": _now(),
            "modifiedAt": _now(),
            "tags": self._get_param("tags") or {},
            "username": self._get_param("username") or principal,
            "type": entry_type,
            "_policies": {},
        }
        return ActionResult({"accessEntry": _public(entries[principal])})


def _public(entry):
    return {key: value for key, value in entry.items() if not key.startswith("_")}


def describe_access_entry(self):
    with LOCK:
        return ActionResult({"accessEntry": _public(_entry(self, self._get_param("name"), _principal(self)))})


def list_access_entries(self):
    with LOCK:
        entries = _entries(self, self._get_param("name"))
        return ActionResult({"accessEntries": sorted(entries)})


def delete_access_entry(self):
    with LOCK:
        cluster = self._get_param("name")
        _entry(self, cluster, _principal(self))
        del _entries(self, cluster)[_principal(self)]
        return EmptyResult()


def associate_access_policy(self):
    with LOCK:
        cluster = self._get_param("name")
        entry = _entry(self, cluster, _principal(self))
        policy = self._get_param("policyArn") or ""
        scope = self._get_param("accessScope") or {}
        if not policy.startswith(_policy_prefix(self.region)) or scope.get("type") not in ("cluster", "namespace"):
            raise InvalidParameterException(clusterName=cluster, message="policyArn and accessScope (cluster or namespace) are required")
        association = {"policyArn": policy, "accessScope": {"type": scope["type"], "namespaces": scope.get("namespaces") or []},
                       "associatedAt": _now(), "modifiedAt": _now()}
        entry["_policies"][policy] = association
        return ActionResult({"clusterName": cluster, "principalArn": entry["principalArn"], "associatedAccessPolicy": association})


def list_associated_access_policies(self):
    with LOCK:
        cluster = self._get_param("name")
        entry = _entry(self, cluster, _principal(self))
        return ActionResult({"clusterName": cluster, "principalArn": entry["principalArn"],
                             "associatedAccessPolicies": list(entry["_policies"].values())})


def disassociate_access_policy(self):
    with LOCK:
        cluster = self._get_param("name")
        entry = _entry(self, cluster, _principal(self))
        policy = unquote(self._get_param("policyArn"))
        if entry["_policies"].pop(policy, None) is None:
            raise ResourceNotFoundException(
                clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=None,
                message="The specified policy is not associated with this access entry.")
        return EmptyResult()


# EKS's order of authentication modes: a cluster moves forward only ("Change authentication mode
# to use access entries", Amazon EKS User Guide).
AUTHENTICATION_MODES = ["CONFIG_MAP", "API_AND_CONFIG_MAP", "API"]

_moto_create_cluster = EKSResponse.create_cluster


def create_cluster(self):
    """Keeps the authentication mode asked for (moto drops it); EKS's default is CONFIG_MAP.
    Set on moto's cluster object, it is serialized as the cluster's `accessConfig`.
    Reports the cluster's VPC (`resourcesVpcConfig.vpcId`, the VPC of its subnets) as EKS does
    (moto kept only what was sent). Not emulated: EKS's refusal of subnets that do not exist
    or lie in one zone."""
    result = _moto_create_cluster(self)
    mode = (self._get_param("accessConfig") or {}).get("authenticationMode", "CONFIG_MAP")
    cluster = self.eks_backend.describe_cluster(name=self._get_param("name"))
    cluster.access_config = {"authenticationMode": mode}
    from moto.ec2.models import ec2_backends
    ec2 = ec2_backends[self.current_account][self.region]
    for subnet_id in (cluster.resources_vpc_config or {}).get("subnetIds", []):
        try:
            subnet = ec2.get_subnet(subnet_id)
        except Exception:  # an unknown subnet: EKS would refuse it; moto reports no VPC
            continue
        cluster.resources_vpc_config = {**cluster.resources_vpc_config, "vpcId": subnet.vpc_id}
        break
    return result


def update_cluster_config(self):
    """EKS's rules for the updates pwless makes. The messages of the first two are EKS's own
    (as its users report them); the authentication-mode message is ours."""
    name = self._get_param("name")
    kinds = [key for key in ("resourcesVpcConfig", "logging", "accessConfig", "kubernetesNetworkConfig",
                             "remoteNetworkConfig", "upgradePolicy", "zonalShiftConfig", "computeConfig",
                             "storageConfig") if self._get_param(key)]
    if len(kinds) > 1:
        raise InvalidParameterException(message="Only one type of update can be allowed.")
    cluster = self.eks_backend.describe_cluster(name=name)
    vpc = self._get_param("resourcesVpcConfig")
    access = self._get_param("accessConfig")
    if vpc:
        current = cluster.resources_vpc_config
        wanted = {**current, **vpc}
        if all(current.get(key) == value for key, value in vpc.items()):
            raise InvalidParameterException(message=(
                "Cluster is already at the desired configuration with endpointPrivateAccess: "
                f"{str(current.get('endpointPrivateAccess', False)).lower()} , endpointPublicAccess: "
                f"{str(current.get('endpointPublicAccess', True)).lower()}, and Public Endpoint "
                "Restrictions: [0.0.0.0/0]"))
        cluster.resources_vpc_config = wanted
    elif access:
        with LOCK:
            now = (getattr(cluster, "access_config", None) or {}).get("authenticationMode", "CONFIG_MAP")
            wanted = access.get("authenticationMode", now)
            if wanted not in AUTHENTICATION_MODES or \
                    AUTHENTICATION_MODES.index(wanted) <= AUTHENTICATION_MODES.index(now):
                raise InvalidParameterException(message=(
                    f"Unsupported authentication mode update from {now} to {wanted}: a cluster's "
                    "mode moves only from CONFIG_MAP to API_AND_CONFIG_MAP to API"))
            cluster.access_config = {"authenticationMode": wanted}
    else:
        return _moto_update_cluster_config(self)
    return ActionResult({"cluster": cluster})


_moto_update_cluster_config = EKSResponse.update_cluster_config

UPDATES = {}  # (account, region, cluster, node group or "") -> {update id: update}


def _provision_seconds(kind):
    for item in os.environ.get("MOTO_PROVISION_SECONDS", "").split(","):
        name, _, seconds = item.partition("=")
        if name.strip() == kind:
            return float(seconds)
    return 0.0


def _provisioning(cls, attribute, ready, pending, kind):
    """`cls.attribute` reads `pending` for MOTO_PROVISION_SECONDS[kind] after the object is made
    while moto has set it to `ready`; any other value (deleting, updating) reads as set."""
    original_init = cls.__init__
    existing = getattr(cls, attribute, None)
    if isinstance(existing, property):  # moto's own (RDS keeps `_status` behind one)
        read, write = existing.fget, existing.fset
    else:
        def read(self):
            return self.__dict__.get("_pwless_" + attribute)

        def write(self, value):
            self.__dict__["_pwless_" + attribute] = value

    def init(self, *args, **kwargs):
        self.__dict__["_pwless_ready_at"] = datetime.datetime.now().timestamp() + _provision_seconds(kind)
        original_init(self, *args, **kwargs)

    def get(self):
        value = read(self)
        if value == ready and datetime.datetime.now().timestamp() < self.__dict__.get("_pwless_ready_at", 0):
            return pending
        return value

    def set(self, value):
        write(self, value)

    cls.__init__ = init
    setattr(cls, attribute, property(get, set))


def _update_seconds():
    return float(os.environ.get("MOTO_EKS_UPDATE_SECONDS", "1"))


def _start_update(self, cluster, kind, params, nodegroup="", undo=None):
    """Records an update of `kind` (EKS's UpdateType) and returns it, InProgress. `undo` puts
    the change back when the update is to fail (MOTO_EKS_FAILED_UPDATES)."""
    failed = kind in os.environ.get("MOTO_EKS_FAILED_UPDATES", "").split(",")
    update = {"id": str(uuid.uuid4()), "status": "InProgress", "type": kind,
              "params": [{"type": key, "value": str(value)} for key, value in params.items()],
              "createdAt": _now(), "errors": [],
              "_done_at": datetime.datetime.now().timestamp() + _update_seconds(),
              "_fails": failed, "_undo": undo}
    with LOCK:
        UPDATES.setdefault((self.current_account, self.region, cluster, nodegroup), {})[update["id"]] = update
    return _public(update)


def _public(update):
    return {key: value for key, value in update.items() if not key.startswith("_")}


def _settle(update):
    """An update's status now: done once its time is up, failed if it was to fail."""
    if update["status"] == "InProgress" and datetime.datetime.now().timestamp() >= update["_done_at"]:
        if update["_fails"]:
            update["status"] = "Failed"
            update["errors"] = [{"errorCode": "Unknown", "errorMessage": f"{update['type']} failed (MOTO_EKS_FAILED_UPDATES)",
                                 "resourceIds": []}]
            if update["_undo"]:
                update["_undo"]()
        else:
            update["status"] = "Successful"
    return update


def _in_progress(self, cluster):
    with LOCK:
        return any(_settle(update)["status"] == "InProgress"
                   for (account, region, name, _), updates in UPDATES.items()
                   if (account, region, name) == (self.current_account, self.region, cluster)
                   for update in updates.values())


TOKENS = {}  # client request token -> the update it made


def _idempotent(function):
    """An update sent again with the same client request token is the same update, as on EKS
    (its answer is the first one's): a send again after a lost answer makes no second update."""
    def wrapped(self):
        token = self._get_param("clientRequestToken")
        with LOCK:
            earlier = TOKENS.get(token) if token else None
        if earlier is not None:
            return ActionResult({"update": _public(earlier)})
        result = function(self)
        if token:
            update = result.result.get("update") if isinstance(result.result, dict) else None
            if update is not None:
                with LOCK:
                    for updates in UPDATES.values():
                        if update["id"] in updates:
                            TOKENS[token] = updates[update["id"]]
        return result
    wrapped.__name__ = function.__name__
    return wrapped


def update_cluster_config_with_update(self):
    """UpdateClusterConfig answers with an update, as EKS does."""
    name = self._get_param("name")
    cluster = self.eks_backend.describe_cluster(name=name)
    if _in_progress(self, name):
        raise ResourceInUseException(clusterName=name, nodegroupName=None, addonName=None,
                                     message="Cluster has an update in progress")
    before_vpc = dict(cluster.resources_vpc_config or {})
    before_access = dict(getattr(cluster, "access_config", None) or {})
    kind = "AccessConfigUpdate" if self._get_param("accessConfig") else \
        "EndpointAccessUpdate" if any(key.startswith("endpoint") for key in (self._get_param("resourcesVpcConfig") or {})) else \
        "VpcConfigUpdate"
    update_cluster_config(self)

    def undo():
        cluster.resources_vpc_config = before_vpc
        cluster.access_config = before_access
    params = self._get_param("resourcesVpcConfig") or self._get_param("accessConfig") or {}
    return ActionResult({"update": _start_update(self, name, kind, params, undo=undo)})


def update_cluster_version(self):
    name = self._get_param("name")
    cluster = self.eks_backend.describe_cluster(name=name)
    if _in_progress(self, name):
        raise ResourceInUseException(clusterName=name, nodegroupName=None, addonName=None,
                                     message="Cluster has an update in progress")
    before = cluster.version
    if self._get_param("version") == before:
        raise InvalidParameterException(message=f"Unsupported Kubernetes minor version update from {before} to {before}")
    cluster.version = self._get_param("version")

    def undo():
        cluster.version = before
    return ActionResult({"update": _start_update(self, name, "VersionUpdate", {"Version": cluster.version}, undo=undo)})


_moto_update_nodegroup_config = EKSResponse.update_nodegroup_config


def update_nodegroup_config(self):
    _moto_update_nodegroup_config(self)
    params = self._get_param("scalingConfig") or {}
    return ActionResult({"update": _start_update(self, self._get_param("name"), "ConfigUpdate", params,
                                                 nodegroup=self._get_param("nodegroupName"))})


def update_nodegroup_version(self):
    cluster, group = self._get_param("name"), self._get_param("nodegroupName")
    nodegroup = self.eks_backend.describe_nodegroup(cluster_name=cluster, nodegroup_name=group)
    if self._get_param("version"):
        nodegroup.version = self._get_param("version")
    return ActionResult({"update": _start_update(self, cluster, "VersionUpdate",
                                                 {"Version": nodegroup.version}, nodegroup=group)})


def describe_update(self):
    cluster = self._get_param("name")
    nodegroup = self._get_param("nodegroupName") or ""
    update_id = self._get_param("updateId")
    with LOCK:
        update = UPDATES.get((self.current_account, self.region, cluster, nodegroup), {}).get(update_id)
        if update is None:
            raise ResourceNotFoundException(clusterName=cluster, nodegroupName=nodegroup or None,
                                            fargateProfileName=None, addonName=None,
                                            message=f"No update found for ID: {update_id}")
        return ActionResult({"update": _public(_settle(update))})


_moto_describe_cluster = EKSResponse.describe_cluster


def describe_cluster(self):
    """UPDATING while an update is in progress, as on EKS."""
    cluster = self.eks_backend.describe_cluster(name=self._get_param("name"))
    if _in_progress(self, cluster.name):
        cluster.status = "UPDATING"
    elif cluster.status == "UPDATING":
        cluster.status = "ACTIVE"
    return _moto_describe_cluster(self)


def _taggable(self, resource_arn, operation):
    """The cluster or managed node group with this ARN: EKS tags both; moto 5.2.5 only
    clusters, and refused a node group's tags as not found."""
    for cluster in self.clusters.values():
        if cluster.arn == resource_arn:
            return cluster
        for nodegroup in cluster.nodegroups.values():
            if nodegroup.arn == resource_arn:
                return nodegroup
    raise ResourceNotFoundException(
        clusterName=None, nodegroupName=None, fargateProfileName=None, addonName=None,
        message=f"An error occurred (NotFoundException) when calling the {operation} operation: Resource was not found")


def _tag_resource(self, resource_arn, tags):
    resource = _taggable(self, resource_arn, "TagResource")
    if resource.tags is None:
        resource.tags = {}
    resource.tags.update(tags)


def _untag_resource(self, resource_arn, tag_keys):
    resource = _taggable(self, resource_arn, "UntagResource")
    for key in tag_keys if isinstance(tag_keys, list) else [tag_keys]:
        (resource.tags or {}).pop(key, None)


def _list_tags_for_resource(self, resource_arn):
    return _taggable(self, resource_arn, "ListTagsForResource").tags or {}


EKSBackend.tag_resource = _tag_resource
EKSBackend.untag_resource = _untag_resource
EKSBackend.list_tags_for_resource = _list_tags_for_resource

from moto.eks.models import Cluster as _EksCluster, Nodegroup as _EksNodegroup  # noqa: E402
from moto.rds.models import DBCluster as _DBCluster, DBInstance as _DBInstance  # noqa: E402
from moto.ec2.models.nat_gateways import NatGateway as _NatGateway  # noqa: E402

_provisioning(_EksCluster, "status", "ACTIVE", "CREATING", "eks_cluster")
_provisioning(_EksNodegroup, "status", "ACTIVE", "CREATING", "eks_nodegroup")
_provisioning(_DBCluster, "status", "available", "creating", "rds_cluster")
_provisioning(_DBInstance, "status", "available", "creating", "rds_instance")
_provisioning(_NatGateway, "state", "available", "pending", "nat_gateway")

for function in (create_access_entry, describe_access_entry, list_access_entries, delete_access_entry,
                 associate_access_policy, list_associated_access_policies, disassociate_access_policy,
                 create_cluster, _idempotent(update_cluster_version), _idempotent(update_nodegroup_config),
                 _idempotent(update_nodegroup_version), describe_update, describe_cluster):
    setattr(EKSResponse, function.__name__, function)
EKSResponse.update_cluster_config = _idempotent(update_cluster_config_with_update)

# The principal ARN is one path segment, URL-encoded; the server decodes `%2F` before routing,
# so the rest of the path is matched whole here and split by moto's model-based router.
urls.url_paths.update({
    "{0}/clusters/(?P<name>[^/]+)/access-entries$": urls.response.dispatch,
    "{0}/clusters/(?P<name>[^/]+)/access-entries/(?P<rest>.+)$": urls.response.dispatch,
    "{0}/clusters/(?P<name>[^/]+)/updates$": urls.response.dispatch,
    "{0}/clusters/(?P<name>[^/]+)/updates/(?P<updateId>[^/]+)$": urls.response.dispatch,
    "{0}/clusters/(?P<name>[^/]+)/node-groups/(?P<nodegroupName>[^/]+)/update-version$": urls.response.dispatch,
})

# S3 checks a conditional write (If-Match, If-None-Match: *) and makes it as one atomic step;
# moto checks, then writes, on a threaded server, so two racing writers could both pass the
# check. One lock around its object writes and deletes makes the check and the write atomic,
# as on S3. pwless's state locks rely on exactly this.
S3_WRITES = threading.Lock()


def _atomic(original):
    def locked(self, *args, **kwargs):
        with S3_WRITES:
            return original(self, *args, **kwargs)
    locked.__name__ = original.__name__
    return locked


for _name in ("put_object", "delete_object"):
    setattr(S3Response, _name, _atomic(getattr(S3Response, _name)))



def _get_bucket_versioning(self):
    """S3's answer: <VersioningConfiguration> with the status, if one was ever set. moto 5.2.5
    serializes it under a <GetBucketVersioningResponse> root, which the AWS SDK for Rust
    rejects."""
    self.data["Action"] = "GetBucketVersioning"
    status = self.backend.get_bucket_versioning(self.bucket_name)
    inner = f"<Status>{status}</Status>" if status else ""
    return 200, {"Content-Type": "application/xml"}, (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}'
        "</VersioningConfiguration>")


S3Response.get_bucket_versioning = _get_bucket_versioning

_moto_get_caller_identity = STSBackend.get_caller_identity


def _get_caller_identity(self, access_key_id, region):
    """STS names an IAM user `arn:PARTITION:iam::ACCOUNT:user/NAME` ("GetCallerIdentity", STS
    API reference); moto 5.2.5 answers callers it does not know (the sandbox's test keys) as
    `arn:aws:sts::ACCOUNT:user/moto`, an ARN AWS never gives. Assumed roles keep their
    `sts::...:assumed-role/...` form, as on AWS."""
    user_id, arn, account = _moto_get_caller_identity(self, access_key_id, region)
    return user_id, re.sub(r"^(arn:[^:]+):sts::(\d{12}):user/", r"\1:iam::\2:user/", arn), account


STSBackend.get_caller_identity = _get_caller_identity

from moto.rds.models import DBCluster  # noqa: E402

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from sandbox_aws import rds_url_identifier  # noqa: E402
import moto_pod_identity  # noqa: E402

moto_pod_identity.install(_provision_seconds)

_moto_cluster_init = DBCluster.__init__


def _cluster_init(self, *args, **kwargs):
    """RDS endpoints are `<cluster>.cluster-<id>.<region>.rds.amazonaws.com`, where `<id>` is
    one per account and region (the same for every cluster there); moto 5.2.5 draws a new one
    per cluster. One per account and region, as on RDS, lets the sandbox PostgreSQL's
    certificate carry the name RDS certificates carry (`*.cluster-<id>.<region>...`), so
    pwless verifies the real endpoint name (scripts/pg-sandbox)."""
    _moto_cluster_init(self, *args, **kwargs)
    self.url_identifier = rds_url_identifier(self.account_id, self.region)


DBCluster.__init__ = _cluster_init

from moto.ec2.models.nat_gateways import NatGatewayBackend  # noqa: E402

NAT_DELETE_SECONDS = float(__import__("os").environ.get("MOTO_NAT_DELETE_SECONDS", "1"))


def delete_nat_gateway(self, nat_gateway_id):
    """As EC2 does: `deleting` now; `deleted` after a while, when the Elastic IP is
    disassociated and the gateway's network interface deleted (the address itself stays
    allocated, as on EC2: "Deleting a NAT gateway disassociates its Elastic IP address, but
    does not release the address", Amazon VPC User Guide, "Delete a NAT gateway")."""
    gateway = self.nat_gateways.get(nat_gateway_id)
    if gateway is None or gateway.state in ("deleting", "deleted"):
        return gateway
    gateway.state = "deleting"

    def finish():
        with LOCK:
            for address in list(self.addresses):
                if address.eni is not None and address.eni.id == gateway._eni.id:
                    self.disassociate_address(address=address.public_ip)
            try:
                self.delete_network_interface(gateway._eni.id)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
            gateway.state = "deleted"

    timer = threading.Timer(NAT_DELETE_SECONDS, finish)
    timer.daemon = True
    timer.start()
    return gateway


NatGatewayBackend.delete_nat_gateway = delete_nat_gateway

from moto.rds.exceptions import RDSClientError  # noqa: E402
from moto.rds.models import RDSBackend  # noqa: E402

_moto_create_db_cluster = RDSBackend.create_db_cluster
_moto_create_subnet_group = RDSBackend.create_subnet_group


def create_db_cluster(self, kwargs):
    """RDS API reference, CreateDBCluster: DBClusterAlreadyExistsFault (400), "The user
    already has a DB cluster with the given identifier"."""
    if kwargs["db_cluster_identifier"] in self.clusters:
        raise RDSClientError(
            "DBClusterAlreadyExistsFault", "DB Cluster already exists"
        )
    return _moto_create_db_cluster(self, kwargs)


def create_subnet_group(self, subnet_name, *args, **kwargs):
    """RDS API reference, CreateDBSubnetGroup: DBSubnetGroupAlreadyExists (400),
    "DBSubnetGroupName is already used by an existing DB subnet group"."""
    if subnet_name in self.subnet_groups:
        raise RDSClientError(
            "DBSubnetGroupAlreadyExists",
            f"The DB subnet group '{subnet_name}' already exists.",
        )
    return _moto_create_subnet_group(self, subnet_name, *args, **kwargs)


_moto_delete_db_cluster = RDSBackend.delete_db_cluster


def delete_db_cluster(self, cluster_identifier, *args, **kwargs):
    """RDS API reference, DeleteDBCluster: automated backups are deleted with the cluster
    unless `DeleteAutomatedBackups` is false (pwless never asks to keep them)."""
    cluster = _moto_delete_db_cluster(self, cluster_identifier, *args, **kwargs)
    for name, snapshot in list(self.cluster_snapshots.items()):
        if snapshot.snapshot_type == "automated" and \
                snapshot.cluster.db_cluster_identifier == cluster_identifier:
            del self.cluster_snapshots[name]
    return cluster


_moto_modify_db_cluster = RDSBackend.modify_db_cluster


def modify_db_cluster(self, kwargs):
    """ModifyDBCluster's EnableIAMDatabaseAuthentication turns IAM database authentication on
    or off (moto 5.2.5 stored it under another name than the one DescribeDBClusters reads, so
    the change was never seen), and its CloudwatchLogsExportConfiguration the log exports."""
    enable = kwargs.get("enable_iam_database_authentication")
    exports = kwargs.get("cloudwatch_logs_export_configuration") or {}
    cluster = _moto_modify_db_cluster(self, kwargs)
    stored = self.clusters[cluster.db_cluster_identifier]
    if enable is not None:
        stored.iam_auth = bool(enable)
    # CloudwatchLogsExportConfiguration turns log exports on and off (moto 5.2.5 read it under
    # another name, so ModifyDBCluster never changed EnabledCloudwatchLogsExports).
    for log_type in exports.get("DisableLogTypes") or []:
        if log_type in stored.enabled_cloudwatch_logs_exports:
            stored.enabled_cloudwatch_logs_exports.remove(log_type)
    for log_type in exports.get("EnableLogTypes") or []:
        if log_type not in stored.enabled_cloudwatch_logs_exports:
            stored.enabled_cloudwatch_logs_exports.append(log_type)
    return cluster


RDSBackend.create_db_cluster = create_db_cluster
RDSBackend.create_subnet_group = create_subnet_group
RDSBackend.delete_db_cluster = delete_db_cluster
RDSBackend.modify_db_cluster = modify_db_cluster

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
