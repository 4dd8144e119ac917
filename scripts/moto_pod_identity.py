"""EKS Pod Identity for the sandbox's moto (imported by scripts/moto-server.py): what moto 5.2.5
does not emulate at all.

- The association calls, in EKS's shapes and error codes: CreatePodIdentityAssociation,
  DescribePodIdentityAssociation, ListPodIdentityAssociations, UpdatePodIdentityAssociation,
  DeletePodIdentityAssociation. One association per (cluster, namespace, service account):
  a second is ResourceInUseException, unless it carries the first one's client request token
  (then it is the same association, as EKS answers a repeat). Associations go with their cluster.
  A new association takes effect for EKS Auth only after MOTO_POD_IDENTITY_SETTLE_SECONDS
  (default 3): "EKS Pod Identity associations are eventually consistent, and may take several
  seconds to be effective" (CreatePodIdentityAssociation, Amazon EKS API Reference).
- The add-on calls for what pwless uses: CreateAddon, DescribeAddon, ListAddons, DeleteAddon
  (ACTIVE at once, or after MOTO_PROVISION_SECONDS' `eks_addon`; DeleteAddon takes the add-on
  away at once). Not emulated: versions, configuration values, health issues, UpdateAddon.
- The EKS Auth API's AssumeRoleForPodIdentity, which the Pod Identity Agent calls with a pod's
  service-account token (signing name `eks-auth`, routed here): the token's issuer must be the
  cluster's OIDC issuer, its audience `pods.eks.amazonaws.com`, its time window current; the
  service account must have an association; the association's role must trust
  `pods.eks.amazonaws.com` for both `sts:AssumeRole` and `sts:TagSession` under the session tags
  EKS sets (`aws:RequestTag/eks-cluster-arn`, `eks-cluster-name`, `kubernetes-namespace`,
  `kubernetes-service-account`, `kubernetes-pod-name`, `kubernetes-pod-uid`; StringEquals and
  StringLike; an explicit Deny wins; any other condition key or operator is not honoured, so the
  statement does not allow). Then moto's STS makes the session, as EKS has STS do.
  Not checked: the token's signature (the sandbox mints unsigned tokens, scripts and
  `pwless sandbox run` alike), the pod's existence, session policies (`policy`) and target roles.
  The error codes for a missing association and a refused trust are EKS Auth's documented ones
  (ResourceNotFoundException, AccessDeniedException); their messages are the stand-in's own.
"""

import base64
import datetime
import fnmatch
import json
import os
import threading
import time
import uuid

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.eks import urls
from moto.eks.exceptions import InvalidParameterException, ResourceInUseException, ResourceNotFoundException
from moto.eks.responses import EKSResponse

POD_IDENTITY_AUDIENCE = "pods.eks.amazonaws.com"
ASSOCIATIONS = {}  # (account, region, cluster) -> {association id: association}
ADDONS = {}  # (account, region, cluster) -> {addon name: addon}
TOKENS = {}  # client request token -> association id
LOCK = threading.Lock()
PROVISION_SECONDS = {"eks_addon": lambda: 0.0}  # install() sets moto-server.py's own reading


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _not_found(cluster, message):
    return ResourceNotFoundException(
        clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=None, message=message)


def _cluster(self, name):
    """The cluster; ResourceNotFound when it is not there (its associations and add-ons go with it)."""
    key = (self.current_account, self.region, name)
    if name not in self.eks_backend.clusters:
        ASSOCIATIONS.pop(key, None)
        ADDONS.pop(key, None)
        raise _not_found(name, f"No cluster found for name: {name}.")
    return self.eks_backend.clusters[name]


def _associations(self, cluster):
    _cluster(self, cluster)
    return ASSOCIATIONS.setdefault((self.current_account, self.region, cluster), {})


def _public(record):
    return {key: value for key, value in record.items() if not key.startswith("_")}


def _association(self, cluster):
    association = _associations(self, cluster).get(self._get_param("associationId"))
    if association is None:
        raise _not_found(cluster, f"Association not found: {self._get_param('associationId')}")
    return association


def create_pod_identity_association(self):
    cluster = self._get_param("name")
    namespace, account = self._get_param("namespace"), self._get_param("serviceAccount")
    role = self._get_param("roleArn") or ""
    if not namespace or not account or ":iam::" not in role or ":role/" not in role:
        raise InvalidParameterException(clusterName=cluster, message="namespace, serviceAccount and a role ARN are required")
    token = self._get_param("clientRequestToken")
    with LOCK:
        associations = _associations(self, cluster)
        if token and TOKENS.get(token) in associations:
            return ActionResult({"association": _public(associations[TOKENS[token]])})
        if any(a["namespace"] == namespace and a["serviceAccount"] == account for a in associations.values()):
            raise ResourceInUseException(
                clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=None,
                message="Association already exists")
        association_id = "a-" + uuid.uuid4().hex[:17]
        partition = "aws-cn" if self.region.startswith("cn-") else "aws-us-gov" if self.region.startswith("us-gov-") else "aws"
        associations[association_id] = {
            "clusterName": cluster,
            "namespace": namespace,
            "serviceAccount": account,
            "roleArn": role,
            "associationArn": f"arn:{partition}:eks:{self.region}:{self.current_account}:podidentityassociation/{cluster}/{association_id}",
            "associationId": association_id,
            "tags": self._get_param("tags") or {},
            "createdAt": _now(),
            "modifiedAt": _now(),
            "disableSessionTags": bool(self._get_param("disableSessionTags")),
            "_effective_at": time.monotonic() + float(os.environ.get("MOTO_POD_IDENTITY_SETTLE_SECONDS", "3")),
        }
        if token:
            TOKENS[token] = association_id
        return ActionResult({"association": _public(associations[association_id])})


def describe_pod_identity_association(self):
    with LOCK:
        return ActionResult({"association": _public(_association(self, self._get_param("name")))})


def list_pod_identity_associations(self):
    namespace, account = self._get_param("namespace"), self._get_param("serviceAccount")
    with LOCK:
        listed = [
            {key: a[key] for key in ("clusterName", "namespace", "serviceAccount", "associationArn", "associationId")}
            for a in _associations(self, self._get_param("name")).values()
            if (not namespace or a["namespace"] == namespace) and (not account or a["serviceAccount"] == account)
        ]
        return ActionResult({"associations": listed})


def update_pod_identity_association(self):
    with LOCK:
        association = _association(self, self._get_param("name"))
        if self._get_param("roleArn"):
            association["roleArn"] = self._get_param("roleArn")
        if self._get_param("disableSessionTags") is not None:
            association["disableSessionTags"] = bool(self._get_param("disableSessionTags"))
        association["modifiedAt"] = _now()
        return ActionResult({"association": _public(association)})


def delete_pod_identity_association(self):
    with LOCK:
        cluster = self._get_param("name")
        association = _association(self, cluster)
        del _associations(self, cluster)[association["associationId"]]
        return ActionResult({"association": _public(association)})


def _addons(self, cluster):
    _cluster(self, cluster)
    return ADDONS.setdefault((self.current_account, self.region, cluster), {})


def _addon_view(addon):
    view = _public(addon)
    view["status"] = "ACTIVE" if time.monotonic() >= addon["_ready_at"] else "CREATING"
    return view


def create_addon(self):
    cluster = self._get_param("name")
    name = self._get_param("addonName")
    with LOCK:
        addons = _addons(self, cluster)
        token = self._get_param("clientRequestToken")
        if name in addons:
            if token and addons[name]["_token"] == token:
                return ActionResult({"addon": _addon_view(addons[name])})
            raise ResourceInUseException(
                clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=name,
                message=f"Addon already exists: {name}")
        partition = "aws-cn" if self.region.startswith("cn-") else "aws-us-gov" if self.region.startswith("us-gov-") else "aws"
        addons[name] = {
            "addonName": name,
            "clusterName": cluster,
            "addonVersion": "v1.3.4-eksbuild.1",
            "health": {"issues": []},
            "addonArn": f"arn:{partition}:eks:{self.region}:{self.current_account}:addon/{cluster}/{name}/{uuid.uuid4()}",
            "createdAt": _now(),
            "modifiedAt": _now(),
            "tags": self._get_param("tags") or {},
            "_token": token,
            "_ready_at": time.monotonic() + PROVISION_SECONDS["eks_addon"](),
        }
        return ActionResult({"addon": _addon_view(addons[name])})


def _addon(self, cluster, name):
    addon = _addons(self, cluster).get(name)
    if addon is None:
        raise ResourceNotFoundException(
            clusterName=cluster, nodegroupName=None, fargateProfileName=None, addonName=name,
            message=f"No addon: {name} found in cluster: {cluster}")
    return addon


def describe_addon(self):
    with LOCK:
        return ActionResult({"addon": _addon_view(_addon(self, self._get_param("name"), self._get_param("addonName")))})


def list_addons(self):
    with LOCK:
        return ActionResult({"addons": sorted(_addons(self, self._get_param("name")))})


def delete_addon(self):
    with LOCK:
        cluster, name = self._get_param("name"), self._get_param("addonName")
        addon = _addon(self, cluster, name)
        del _addons(self, cluster)[name]
        view = _addon_view(addon)
        view["status"] = "DELETING"
        return ActionResult({"addon": view})


# --- EKS Auth: AssumeRoleForPodIdentity -------------------------------------------------------

def _error(status, code, message):
    return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, json.dumps(
        {"__type": code, "message": message})


def _claims(token):
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None


def _as_list(value):
    return value if isinstance(value, list) else [] if value is None else [value]


def trust_allows(document, tags):
    """Whether a role's trust lets EKS Pod Identity assume it with these session tags: `None`,
    or why not. Both sts:AssumeRole and sts:TagSession must be allowed (EKS calls AssumeRole
    with tags); an explicit Deny of either wins."""
    def matches(statement, action):
        principals = _as_list((statement.get("Principal") or {}).get("Service")) if isinstance(statement.get("Principal"), dict) else []
        if statement.get("Principal") != "*" and POD_IDENTITY_AUDIENCE not in principals:
            return False
        if not any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in _as_list(statement.get("Action"))):
            return False
        for operator, keys in (statement.get("Condition") or {}).items():
            for key, expected in keys.items():
                if not key.startswith("aws:RequestTag/") or operator not in ("StringEquals", "StringLike"):
                    return False  # not emulated: not honoured
                value = tags.get(key.split("/", 1)[1])
                if value is None:
                    return False
                if operator == "StringEquals" and value not in _as_list(expected):
                    return False
                if operator == "StringLike" and not any(fnmatch.fnmatchcase(value, p) for p in _as_list(expected)):
                    return False
        return True

    statements = _as_list(document.get("Statement"))
    for action in ("sts:AssumeRole", "sts:TagSession"):
        if any(s.get("Effect") == "Deny" and matches(s, action) for s in statements):
            return f"an explicit Deny of {action} in the role's trust policy"
        if not any(s.get("Effect") == "Allow" and matches(s, action) for s in statements):
            return f"no statement of the role's trust policy allows {POD_IDENTITY_AUDIENCE} {action} with this session's tags"
    return None


def assume_role_for_pod_identity(request, full_url, headers):
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends
    from moto.eks.models import eks_backends
    from moto.utilities.utils import get_partition

    path = full_url.split("?")[0]
    cluster_name = path.rstrip("/").split("/")[-2]
    region = "us-east-1"
    authorization = headers.get("Authorization", "")
    if "Credential=" in authorization:
        region = authorization.split("Credential=")[1].split("/")[2]
    account = DEFAULT_ACCOUNT_ID
    body = request.data if hasattr(request, "data") else request.body
    token = json.loads(body or b"{}").get("token", "")
    cluster = eks_backends[account][region].clusters.get(cluster_name)
    if cluster is None:
        return _error(404, "ResourceNotFoundException", f"No cluster found for name: {cluster_name}.")
    claims = _claims(token)
    if not claims:
        return _error(401, "InvalidTokenException", "The service account token is not a JWT")
    issuer = cluster.identity["oidc"]["issuer"]
    if claims.get("iss") != issuer:
        return _error(401, "InvalidTokenException", f"The token's issuer {claims.get('iss')} is not the cluster's ({issuer})")
    if POD_IDENTITY_AUDIENCE not in _as_list(claims.get("aud")):
        return _error(401, "InvalidTokenException", f"The token's audience is not {POD_IDENTITY_AUDIENCE}")
    if not claims.get("nbf", 0) <= time.time() < claims.get("exp", 0):
        return _error(401, "ExpiredTokenException", "The service account token has expired")
    subject = claims.get("sub", "").split(":")
    if len(subject) != 4 or subject[:2] != ["system", "serviceaccount"]:
        return _error(401, "InvalidTokenException", "The token's subject is not a service account")
    namespace, service_account = subject[2], subject[3]
    with LOCK:
        found = [a for a in ASSOCIATIONS.get((account, region, cluster_name), {}).values()
                 if a["namespace"] == namespace and a["serviceAccount"] == service_account
                 and a["_effective_at"] <= time.monotonic()]
    if not found:
        return _error(404, "ResourceNotFoundException",
                      f"No Pod Identity association for service account {namespace}/{service_account} in cluster {cluster_name}")
    association = found[0]
    role_arn = association["roleArn"]
    try:
        role = iam_backends[account][get_partition(region)].get_role_by_arn(role_arn)
    except Exception:  # moto raises its own IAMNotFoundException
        return _error(403, "AccessDeniedException", f"The association's role {role_arn} does not exist")
    pod = f"{service_account}-sandbox"
    tags = {
        "eks-cluster-arn": cluster.arn,
        "eks-cluster-name": cluster_name,
        "kubernetes-namespace": namespace,
        "kubernetes-service-account": service_account,
        "kubernetes-pod-name": pod,
        "kubernetes-pod-uid": str(uuid.uuid5(uuid.NAMESPACE_URL, pod)),
    }
    if association.get("disableSessionTags"):
        tags = {}
    why = trust_allows(json.loads(role.assume_role_policy_document), tags)
    if why:
        return _error(403, "AccessDeniedException", f"EKS Pod Identity may not assume {role_arn}: {why}")
    session = f"eks-{cluster_name}-{pod}-{uuid.uuid4()}"[:64]
    assumed = sts_backends[account][get_partition(region)].assume_role(
        region_name=region, role_session_name=session, role_arn=role_arn, policy=None, duration=21600, external_id=None)
    return 200, {"Content-Type": "application/json"}, json.dumps({
        "subject": {"namespace": namespace, "serviceAccount": service_account},
        "audience": POD_IDENTITY_AUDIENCE,
        "podIdentityAssociation": {"associationArn": association["associationArn"], "associationId": association["associationId"]},
        "assumedRoleUser": {"arn": assumed.arn, "assumeRoleId": assumed.user_id},
        "credentials": {
            "sessionToken": assumed.session_token,
            "secretAccessKey": assumed.secret_access_key,
            "accessKeyId": assumed.access_key_id,
            "expiration": int(assumed.expiration.timestamp()),
        },
    })


def install(provision_seconds):
    """Adds all of the above to moto; `provision_seconds(kind)` is how long a resource of that
    kind stays creating (MOTO_PROVISION_SECONDS)."""
    PROVISION_SECONDS["eks_addon"] = lambda: provision_seconds("eks_addon")
    for function in (create_pod_identity_association, describe_pod_identity_association,
                     list_pod_identity_associations, update_pod_identity_association,
                     delete_pod_identity_association, create_addon, describe_addon, list_addons, delete_addon):
        setattr(EKSResponse, function.__name__, function)
    urls.url_paths.update({
        "{0}/clusters/(?P<name>[^/]+)/pod-identity-associations$": urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/pod-identity-associations/(?P<associationId>[^/]+)$": urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/addons$": urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/addons/(?P<addonName>[^/]+)$": urls.response.dispatch,
        "{0}/clusters/(?P<name>[^/]+)/assume-role-for-pod-identity$": assume_role_for_pod_identity,
    })
    # EKS Auth signs as `eks-auth`; its one call lives beside the clusters it reads.
    from moto.moto_server import werkzeug_app
    werkzeug_app.SIGNING_ALIASES["eks-auth"] = "eks"
