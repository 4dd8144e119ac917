#!/usr/bin/env python3
"""A Kubernetes API server stand-in for pwless's tests and sandbox (Python stdlib only).

No Kubernetes API server can be installed on these machines (Debian ships only clients, no
registry ships kube-apiserver), and kmock answers 500 for cluster-scoped objects, for a
server-side apply of a missing object and after a delete. This stand-in speaks the part of
the API pwless uses, with the API server's own status codes and Status bodies, so the
client path (kube-rs, TLS, the EKS bearer token, server-side apply) runs for real:

- HTTPS on 127.0.0.1 with a CA it makes at start (openssl), printed as `<dir>/ca.pem`;
- authentication as EKS does it: a `k8s-aws-v1.` token is a presigned STS GetCallerIdentity
  URL; the stand-in re-computes its SigV4 signature for the credentials it was told of
  (--aws-key ID:SECRET), checks the `x-k8s-aws-id` header is the cluster (--cluster), the
  host, the action and the 15-minute window; anything else answers 401. --static-token
  admits one fixed token (for tests that look at objects directly);
- authorization as EKS does it (with --moto): the caller's identity from moto's STS, and an
  EKS access entry for it (a role session counts as its role) with
  AmazonEKSClusterAdminPolicy on cluster scope, read from moto (scripts/moto-server.py adds
  access entries to moto); without one, 403;
- namespaces, serviceaccounts, services, configmaps (core/v1), deployments (apps/v1) and
  networkpolicies (networking.k8s.io/v1): GET, DELETE, and PATCH as server-side apply (application/apply-patch+yaml, fieldManager required,
  409 Conflict on fields another manager owns unless force=true, fields the manager stopped
  applying removed, managedFields kept) or as JSON merge patch (another manager's edit);
- pods, as a Deployment's controller makes them: GET of a namespace's pods (equality label
  selectors only), each Ready once its Deployment is available;
- pod port-forward over WebSocket, as the API server and kubelet do it (subprotocol
  v4.channel.k8s.io; per port a data and an error channel, each opened with the port number,
  little-endian): a forward to a pod's declared containerPort 5432 (the database relay's) is
  connected to the address the relay's own connection would reach: --db-route ENDPOINT=HOST:PORT
  for the endpoint its container is given (DB_ENDPOINT; one sandbox PostgreSQL per database),
  else --db-target HOST:PORT (the sandbox PostgreSQL); any other port gets the kubelet's "connection refused" on its error
  channel. No relay process runs: the stand-in moves the bytes the relay would move;
- what controllers do, later and lazily: a Deployment becomes available after
  --deploy-seconds (never, if its service account is missing, as pods cannot be made); a
  LoadBalancer Service gets a hostname after --lb-seconds and keeps a finalizer, so its
  deletion takes --lb-seconds too; a deleted Namespace is Terminating until what is in it
  is gone; 404 after a delete; 403 for new objects in a terminating namespace.

- Jobs (batch/v1): POST, GET, DELETE; the Job's pod listed with the controller's `job-name`
  label and its log at pods/NAME/log. No image can be pulled here: the container's command
  runs as --job-binary under --job-runner (`pwless sandbox run -f STACK --as NS/SA --`, with
  `--database NAME` when the Job is labelled pwless/database, so with the credentials EKS would
  give the service account's pods, checked as STS would, and that database's environment), its
  output the pod's log, its exit the Job's Complete or Failed condition (backoffLimit 0).
  activeDeadlineSeconds and ttlSecondsAfterFinished are stored, not counted; a Job whose
  service account is missing stays active.

Not covered: lists (but pods) and watches, other kinds, strategic merge, field sets inside
lists (lists are atomic here), admission, RBAC and access policies other than cluster-admin,
image pulls (every image "runs"), NetworkPolicy enforcement (policies are stored, not
enforced), the relay's configuration (its ConfigMap is stored, not read), SPDY port-forward.
GET /_standin/requests lists the requests it served (method, path, content type, field
manager; for a port-forward its subresource, ports and target) for tests.
"""

import argparse
import base64
import copy
import datetime
import hashlib
import hmac
import json
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_aws import age_seconds, moto_call, presigned_signature, signature_matches  # noqa: E402

KINDS = {
    # plural: (apiVersion, kind, namespaced)
    "namespaces": ("v1", "Namespace", False),
    "serviceaccounts": ("v1", "ServiceAccount", True),
    "services": ("v1", "Service", True),
    "deployments": ("apps/v1", "Deployment", True),
    "configmaps": ("v1", "ConfigMap", True),
    "networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy", True),
    "jobs": ("batch/v1", "Job", True),
}
# The subprotocol the API server speaks for a WebSocket port-forward (k8s.io/apiserver
# pkg/util/wsstream: "v4.channel.k8s.io", binary frames, first byte the channel).
PORTFORWARD_PROTOCOL = "v4.channel.k8s.io"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
RELAY_PORT = 5432
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self):
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            status["details"] = self.details
        return status


def not_found(plural, name):
    return ApiError(404, "NotFound", f'{plural} "{name}" not found',
                    {"name": name, "kind": plural})


# --- field sets: leaf paths of a config; lists are atomic -----------------------------------

IGNORED_TOP = {"apiVersion", "kind", "status"}
IGNORED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                "managedFields", "deletionTimestamp", "finalizers"}


def leaf_paths(value, prefix=()):
    if isinstance(value, dict) and value:
        out = set()
        for key, item in value.items():
            path = prefix + (key,)
            if not prefix and key in IGNORED_TOP:
                continue
            if prefix == ("metadata",) and key in IGNORED_META:
                continue
            out |= leaf_paths(item, path)
        return out
    return {prefix} if prefix else set()


def get_path(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def set_path(obj, path, value):
    for key in path[:-1]:
        if not isinstance(obj.get(key), dict):
            obj[key] = {}
        obj = obj[key]
    # An empty map applied is merged, as structured-merge-diff merges maps: it makes the map
    # if missing and leaves the keys other managers set (a namespace's labels).
    if value == {} and isinstance(obj.get(path[-1]), dict):
        return
    obj[path[-1]] = copy.deepcopy(value)


def remove_path(obj, path):
    parents = []
    for key in path[:-1]:
        if not isinstance(obj, dict) or key not in obj:
            return
        parents.append((obj, key))
        obj = obj[key]
    if isinstance(obj, dict):
        obj.pop(path[-1], None)
    # Drop maps the removal left empty.
    for parent, key in reversed(parents):
        if parent[key] == {}:
            del parent[key]


def fields_v1(paths):
    tree = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault("f:" + key, {})
    return tree


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


# --- EKS token checking -------------------------------------------------------------------

def principal_of(arn):
    """The IAM principal an access entry names for a caller ARN, as EKS maps it: a role
    session is its role (EKS matches roles by name; paths are not in session ARNs)."""
    match = re.match(r"arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/", arn)
    if match:
        return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}"
    match = re.match(r"arn:([^:]+):(?:sts|iam)::(\d{12}):user/(.+)$", arn)
    if match:
        return f"arn:{match[1]}:iam::{match[2]}:user/{match[3]}"
    return arn


def same_principal(entry, principal):
    if entry == principal:
        return True
    # A role entry with a path matches the session of that role.
    role = re.match(r"(arn:[^:]+:iam::\d{12}:role/)(?:.*/)?([^/]+)$", entry)
    return bool(role) and principal == role[1] + role[2]


def authorize(args, access_key, region):
    """The caller's ARN if it has cluster-admin through an access entry; else raises."""
    status, body = moto_call(args.moto, access_key, region, "sts", "/?Action=GetCallerIdentity&Version=2011-06-15")
    found = re.search(rb"<Arn>([^<]+)</Arn>", body)
    if status != 200 or not found:
        raise ApiError(401, "Unauthorized", "Unauthorized")
    caller = found[1].decode()
    principal = principal_of(caller)
    status, body = moto_call(args.moto, access_key, region, "eks", f"/clusters/{urllib.parse.quote(args.cluster, safe='')}/access-entries")
    entries = json.loads(body).get("accessEntries", []) if status == 200 else []
    for entry in entries:
        if not same_principal(entry, principal):
            continue
        status, body = moto_call(args.moto, access_key, region, "eks",
                                 f"/clusters/{urllib.parse.quote(args.cluster, safe='')}/access-entries/{urllib.parse.quote(entry, safe='')}/access-policies")
        policies = json.loads(body).get("associatedAccessPolicies", []) if status == 200 else []
        if any(p.get("policyArn", "").endswith("/AmazonEKSClusterAdminPolicy") and p.get("accessScope", {}).get("type") == "cluster"
               for p in policies):
            return caller
    raise ApiError(403, "Forbidden", f'User "{caller}" cannot use this cluster: it has no EKS access entry with AmazonEKSClusterAdminPolicy')


def check_eks_token(token, keys, cluster):
    """The caller's access key id, or raises ValueError saying why the token is refused."""
    if not token.startswith("k8s-aws-v1."):
        raise ValueError("not an EKS token")
    encoded = token[len("k8s-aws-v1."):]
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    parsed = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    query = dict(pairs)
    if parsed.scheme != "https" or parsed.path != "/" or not parsed.hostname.startswith("sts."):
        raise ValueError(f"not an STS URL: {parsed.scheme}://{parsed.hostname}{parsed.path}")
    if query.get("Action") != "GetCallerIdentity" or query.get("Version") != "2011-06-15":
        raise ValueError("not a GetCallerIdentity call")
    if query.get("X-Amz-SignedHeaders") != "host;x-k8s-aws-id":
        raise ValueError("the cluster header is not signed")
    access_key, date, region, service, _ = query.get("X-Amz-Credential", "////").split("/")
    if service != "sts" or parsed.hostname != f"sts.{region}.amazonaws.com":
        raise ValueError("the credential scope does not match the host")
    stamp = query.get("X-Amz-Date", "")
    age = age_seconds(stamp)
    if age > 15 * 60 or age < -5 * 60:
        raise ValueError(f"the token is expired or from the future ({int(age)} s old)")
    if access_key not in keys:
        raise ValueError(f"unknown access key {access_key}")
    signature = query.pop("X-Amz-Signature", "")
    pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    expected = presigned_signature(keys[access_key], region, "sts", stamp, pairs,
                                   {"host": parsed.hostname, "x-k8s-aws-id": cluster})
    if not signature_matches(signature, expected):
        raise ValueError("bad signature (wrong secret, or signed for another cluster)")
    return access_key, region


# --- the store ----------------------------------------------------------------------------

class Store:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.objects = {}   # (plural, namespace, name) -> object
        self.owners = {}    # (plural, namespace, name) -> {manager: set(paths)}
        self.timers = {}    # key -> {"ready_at": t, "gone_at": t}
        self.version = 0
        self.requests = []
        self.job_runs = {}  # key -> {"process": Popen or None, "log": str, "ended": bool, "phase": str}

    def next_version(self):
        self.version += 1
        return str(self.version)

    # controllers, run before every request
    def tick(self):
        now = time.monotonic()
        for key in list(self.objects):
            obj = self.objects.get(key)
            if obj is None:
                continue
            plural = key[0]
            timer = self.timers.setdefault(key, {})
            meta = obj["metadata"]
            if "deletionTimestamp" in meta:
                if plural == "namespaces":
                    inside = [k for k in self.objects if k[1] == key[2]]
                    for other in inside:
                        self.start_delete(other)
                    if not inside and now >= timer.get("gone_at", 0):
                        self.forget(key)
                elif now >= timer.get("gone_at", 0):
                    self.forget(key)
                continue
            if plural == "deployments":
                self.deployment_status(key, obj, now)
            if plural == "services" and obj.get("spec", {}).get("type") == "LoadBalancer":
                if now >= timer.get("lb_at", now + 1) and not get_path(obj, ("status", "loadBalancer", "ingress")):
                    digest = hashlib.sha1("/".join(key).encode()).hexdigest()[:16]
                    obj["status"] = {"loadBalancer": {"ingress": [{
                        "hostname": f"k8s-{key[1]}-{key[2]}-{digest}.elb.{self.args.region}.amazonaws.com"}]}}
                    meta["resourceVersion"] = self.next_version()

    def deployment_status(self, key, obj, now):
        timer = self.timers[key]
        generation = obj["metadata"].get("generation", 1)
        wanted = obj.get("spec", {}).get("replicas", 1)
        account = get_path(obj, ("spec", "template", "spec", "serviceAccountName")) or "default"
        account_exists = account == "default" or ("serviceaccounts", key[1], account) in self.objects
        ready = account_exists and now >= timer.get("ready_at", 0)
        status = {"observedGeneration": generation, "replicas": wanted,
                  "updatedReplicas": wanted if ready else 0,
                  "readyReplicas": wanted if ready else 0,
                  "availableReplicas": wanted if ready else 0,
                  "conditions": [{"type": "Available", "status": "True" if ready else "False",
                                  "reason": "MinimumReplicasAvailable" if ready else "MinimumReplicasUnavailable"}]}
        if not account_exists:
            status["conditions"].append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                                         "message": f'pods "{key[2]}-" is forbidden: error looking up service account {key[1]}/{account}: serviceaccount "{account}" not found'})
        if obj.get("status") != status:
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = self.next_version()

    def pods(self, namespace, selector):
        """The pods the Deployments of `namespace` have made, as the controllers would: the
        Deployment's replicas, named <deployment>-<template hash>-<n>, Ready once it is
        available; none while its service account is missing."""
        out = []
        for key, obj in sorted(self.objects.items()):
            if key[0] != "deployments" or key[1] != namespace or "deletionTimestamp" in obj["metadata"]:
                continue
            template = get_path(obj, ("spec", "template")) or {}
            labels = get_path(template, ("metadata", "labels")) or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            if get_path(obj, ("status", "conditions")) and any(
                    c.get("type") == "ReplicaFailure" for c in obj["status"]["conditions"]):
                continue
            ready = get_path(obj, ("status", "availableReplicas")) == obj.get("spec", {}).get("replicas", 1)
            digest = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
            for index in range(obj.get("spec", {}).get("replicas", 1)):
                name = f"{key[2]}-{digest}-{index:05d}"
                out.append({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels,
                                 "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{obj['metadata']['uid']}/{name}")),
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                      "name": f"{key[2]}-{digest}", "uid": obj["metadata"]["uid"]}]},
                    "spec": copy.deepcopy(template.get("spec", {})),
                    "status": {"phase": "Running" if ready else "Pending",
                               "podIP": f"10.0.{100 + index}.{int(digest[:2], 16)}",
                               "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
                })
        return out

    def job_pods(self, namespace, selector):
        """The pod of each Job of `namespace` (one: backoffLimit 0 is all pwless makes),
        named <job>-<n>, labelled as the Job controller labels it."""
        out = []
        for key, obj in sorted(self.objects.items()):
            if key[0] != "jobs" or key[1] != namespace or key not in self.job_runs:
                continue
            template = get_path(obj, ("spec", "template")) or {}
            labels = {**(get_path(template, ("metadata", "labels")) or {}),
                      "job-name": key[2], "batch.kubernetes.io/job-name": key[2],
                      "controller-uid": obj["metadata"]["uid"]}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue
            run = self.job_runs[key]
            out.append({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{key[2]}-{obj['metadata']['uid'][:5]}", "namespace": namespace,
                             "labels": labels,
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                                  "name": key[2], "uid": obj["metadata"]["uid"]}]},
                "spec": copy.deepcopy(template.get("spec", {})),
                "status": {"phase": run["phase"],
                           "conditions": [{"type": "Ready", "status": "True" if run["phase"] == "Running" else "False"}]},
            })
        return out

    def start_job(self, key, obj):
        """Runs the Job's one container the way a kubelet would, as far as this machine can:
        images cannot be pulled here, so the container's command runs as --job-binary, under
        --job-runner (`pwless sandbox run -f STACK`: the service account's credentials, as
        EKS gives its pods) with `--as NAMESPACE/SERVICE_ACCOUNT`, and the container's env.
        Its stdout and stderr are the pod's log; exit 0 completes the Job, anything else
        fails it (backoffLimit 0). Without --job-runner the Job fails at once, saying so."""
        spec = get_path(obj, ("spec", "template", "spec")) or {}
        container = (spec.get("containers") or [{}])[0]
        account = spec.get("serviceAccountName") or "default"
        run = {"process": None, "log": "", "ended": False, "phase": "Pending"}
        self.job_runs[key] = run
        if not self.args.job_runner or not self.args.job_binary:
            run.update(ended=True, phase="Failed",
                       log="kube-standin: this stand-in runs Job pods only with --job-runner and --job-binary\n")
            self.end_job(key, False, "StandinCannotRun", "no --job-runner was given")
            return
        if account != "default" and ("serviceaccounts", key[1], account) not in self.objects:
            # The Job controller cannot make the pod; the Job stays active (then hits its
            # activeDeadlineSeconds, which this stand-in does not count).
            run["phase"] = "Pending"
            return
        # A Job of `pwless verify` says which of the stack's databases it logs in to
        # (label pwless/database): the runner gives the pod that database's environment.
        database = (get_path(obj, ("metadata", "labels")) or {}).get("pwless/database")
        command = (json.loads(self.args.job_runner) + ["--as", f"{key[1]}/{account}"]
                   + (["--database", database] if database else [])
                   + ["--", self.args.job_binary] + [str(a) for a in container.get("args") or []])
        missing = [path for path in (command[0], self.args.job_binary) if not os.access(path, os.X_OK)]
        if missing:
            run.update(ended=True, phase="Failed",
                       log=f"kube-standin: {', '.join(missing)} not built: no container can run\n")
            self.end_job(key, False, "StandinCannotRun", f"{', '.join(missing)} not built")
            return
        # The kubelet tells every pod where the API server is (KUBERNETES_SERVICE_HOST); the
        # runner, a pwless, reads it from these.
        env = {**os.environ, **{e["name"]: e.get("value", "") for e in container.get("env") or []},
               "PWLESS_KUBE_API_URL": self.url, "PWLESS_KUBE_CA_FILE": os.path.join(self.args.dir, "ca.pem")}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        run.update(process=process, phase="Running")

        def wait():
            output = process.stdout.read().decode(errors="replace")
            code = process.wait()
            with self.lock:
                run.update(log=output, ended=True, phase="Succeeded" if code == 0 else "Failed")
                # Not a Job deleted and made again under the same name meanwhile.
                if key in self.objects and self.job_runs.get(key) is run:
                    self.end_job(key, code == 0, "BackoffLimitExceeded",
                                 f"Job has reached the specified backoff limit (the container exited {code})")
        threading.Thread(target=wait, daemon=True).start()

    def end_job(self, key, succeeded, reason, message):
        obj = self.objects[key]
        condition = ({"type": "Complete", "status": "True"} if succeeded else
                     {"type": "Failed", "status": "True", "reason": reason, "message": message})
        obj["status"] = {"succeeded" if succeeded else "failed": 1, "conditions": [condition]}
        obj["metadata"]["resourceVersion"] = self.next_version()

    def db_target(self, pod):
        """Where a relay pod's connection goes: the --db-route of the endpoint its container
        is given (DB_ENDPOINT, as the VPC's DNS resolves a cluster endpoint), else --db-target."""
        env = {e.get("name"): e.get("value") for c in pod["spec"].get("containers", []) for e in c.get("env") or []}
        return self.args.routes.get(env.get("DB_ENDPOINT"), self.args.db_target)

    def pod(self, namespace, name):
        for pod in self.pods(namespace, {}) + self.job_pods(namespace, {}):
            if pod["metadata"]["name"] == name:
                return pod
        raise not_found("pods", name)

    def forget(self, key):
        run = self.job_runs.pop(key, None)
        if run and run["process"] is not None and run["process"].poll() is None:
            run["process"].kill()
        self.objects.pop(key, None)
        self.owners.pop(key, None)
        self.timers.pop(key, None)

    def start_delete(self, key):
        obj = self.objects.get(key)
        if obj is None or "deletionTimestamp" in obj["metadata"]:
            return obj
        meta = obj["metadata"]
        meta["deletionTimestamp"] = now_rfc3339()
        meta["resourceVersion"] = self.next_version()
        delay = 0.0
        if LB_FINALIZER in meta.get("finalizers", []):
            delay = self.args.lb_seconds
        elif key[0] == "deployments":
            delay = 0.2  # its ReplicaSets and Pods go first (foreground)
        elif key[0] == "namespaces":
            delay = 0.2
            obj.setdefault("status", {})["phase"] = "Terminating"
        self.timers.setdefault(key, {})["gone_at"] = time.monotonic() + delay
        return obj

    def create_job(self, namespace, config):
        """POST of a Job: 409 if one of that name exists, else stored and its pod started."""
        name = get_path(config, ("metadata", "name")) or ""
        self.validate("jobs", namespace, name, config)
        key = self.key("jobs", namespace, name)
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'jobs.batch "{name}" already exists',
                           {"name": name, "group": "batch", "kind": "jobs"})
        self.check_namespace(namespace, True)
        obj = copy.deepcopy(config)
        obj["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(),
                               generation=1, resourceVersion=self.next_version())
        obj["status"] = {"active": 1}
        self.objects[key] = obj
        self.start_job(key, obj)
        return 201, self.render(key)

    def key(self, plural, namespace, name):
        return (plural, namespace or "", name)

    def check_namespace(self, namespace, creating):
        if namespace is None:
            return
        ns = self.objects.get(("namespaces", "", namespace))
        if ns is None:
            raise not_found("namespaces", namespace)
        if creating and "deletionTimestamp" in ns["metadata"]:
            raise ApiError(403, "Forbidden", f"unable to create new content in namespace {namespace} because it is being terminated")

    def validate(self, plural, namespace, name, config):
        api_version, kind, _ = KINDS[plural]
        problems = []
        if config.get("apiVersion") != api_version or config.get("kind") != kind:
            raise ApiError(400, "BadRequest", f"the body is {config.get('apiVersion')}/{config.get('kind')}, not {api_version}/{kind}")
        meta = config.get("metadata") or {}
        if meta.get("name") != name:
            problems.append("metadata.name: Invalid value: the name of the object does not match the name on the URL")
        if namespace and meta.get("namespace") not in (None, namespace):
            problems.append("metadata.namespace: Invalid value: the namespace of the object does not match the namespace on the URL")
        for label, value in (meta.get("labels") or {}).items():
            if not isinstance(value, str):
                problems.append(f"metadata.labels.{label}: Invalid value: must be a string")
        if plural == "deployments":
            selector = get_path(config, ("spec", "selector", "matchLabels")) or {}
            labels = get_path(config, ("spec", "template", "metadata", "labels")) or {}
            if not selector:
                problems.append("spec.selector: Required value")
            elif any(labels.get(k) != v for k, v in selector.items()):
                problems.append("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`")
            containers = get_path(config, ("spec", "template", "spec", "containers")) or []
            if not containers or not all(c.get("image") for c in containers):
                problems.append("spec.template.spec.containers[0].image: Required value")
            for container in containers:
                for entry in container.get("env") or []:
                    if "value" in entry and not isinstance(entry["value"], str):
                        problems.append(f"spec.template.spec.containers.env[{entry.get('name')}].value: Invalid value: must be a string")
        if plural == "jobs":
            containers = get_path(config, ("spec", "template", "spec", "containers")) or []
            if not containers or not all(c.get("image") for c in containers):
                problems.append("spec.template.spec.containers[0].image: Required value")
            if get_path(config, ("spec", "template", "spec", "restartPolicy")) not in ("Never", "OnFailure"):
                problems.append('spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"')
        if plural == "services":
            for port in get_path(config, ("spec", "ports")) or []:
                if not isinstance(port.get("port"), int) or not 0 < port["port"] < 65536:
                    problems.append("spec.ports[0].port: Invalid value: must be between 1 and 65535")
        if problems:
            raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: ' + "; ".join(problems),
                           {"name": name, "kind": plural})

    def render(self, key):
        obj = copy.deepcopy(self.objects[key])
        obj["metadata"]["managedFields"] = [
            {"manager": manager, "operation": entry["operation"], "apiVersion": obj["apiVersion"],
             "time": entry["time"], "fieldsType": "FieldsV1", "fieldsV1": fields_v1(entry["paths"])}
            for manager, entry in sorted(self.owners.get(key, {}).items()) if entry["paths"]]
        return obj

    def write(self, plural, namespace, name, config, manager, force, operation):
        """Server-side apply (operation Apply) or merge patch (Update) of `config`."""
        key = self.key(plural, namespace, name)
        existing = self.objects.get(key)
        if existing is not None and "deletionTimestamp" in existing["metadata"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object is being deleted')
        if existing is None and operation == "Update":
            raise not_found(plural, name)
        self.check_namespace(namespace, existing is None)
        owners = self.owners.setdefault(key, {})
        obj = copy.deepcopy(existing) if existing else {
            "apiVersion": KINDS[plural][0], "kind": KINDS[plural][1],
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(), "generation": 1}}
        if namespace:
            obj["metadata"]["namespace"] = namespace
        if operation == "Apply":
            self.validate(plural, namespace, name, config)
            paths = leaf_paths(config)
            conflicts = sorted(
                (other, path) for other, entry in owners.items() if other != manager
                for path in paths & entry["paths"] if get_path(obj, path) != get_path(config, path))
            if conflicts and not force:
                listed = "; ".join(f'conflict with "{other}": .{".".join(path)}' for other, path in conflicts)
                raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {listed}")
            previous = owners.get(manager, {}).get("paths", set())
            held_by_others = set().union(*(e["paths"] for m, e in owners.items() if m != manager)) if owners else set()
            for path in previous - paths - held_by_others:
                remove_path(obj, path)
            for path in paths:
                set_path(obj, path, get_path(config, path))
            for other, entry in owners.items():
                if other != manager:
                    entry["paths"] -= paths
        else:
            paths = leaf_paths(config)
            obj = merge_patch(obj, {k: v for k, v in config.items() if k not in ("apiVersion", "kind")})
            for other, entry in owners.items():
                if other != manager:
                    entry["paths"] -= paths
            paths |= owners.get(manager, {}).get("paths", set())
            self.validate(plural, namespace, name, {**obj, "metadata": {**obj["metadata"], "managedFields": None}})
        owners[manager] = {"paths": paths, "operation": operation, "time": now_rfc3339()}
        if existing is None or obj != existing:
            if existing is not None and obj.get("spec") != existing.get("spec"):
                obj["metadata"]["generation"] = existing["metadata"].get("generation", 1) + 1
                if plural == "deployments":
                    self.timers.setdefault(key, {})["ready_at"] = time.monotonic() + self.args.deploy_seconds
            obj["metadata"]["resourceVersion"] = self.next_version()
        if existing is None:
            timer = self.timers.setdefault(key, {})
            if plural == "deployments":
                timer["ready_at"] = time.monotonic() + self.args.deploy_seconds
            if plural == "services" and get_path(obj, ("spec", "type")) == "LoadBalancer":
                obj["metadata"]["finalizers"] = [LB_FINALIZER]
                timer["lb_at"] = time.monotonic() + self.args.lb_seconds
            if plural == "namespaces":
                obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
                obj["status"] = {"phase": "Active"}
        self.objects[key] = obj
        return (201 if existing is None else 200), self.render(key)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle(self):
        # A caller that hangs up (a killed run) is no error of ours: nothing to print.
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        parts = [p for p in parsed.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group_version, rest = "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if len(rest) == 4 and rest[0] == "namespaces":
            namespace, plural, name = rest[1], rest[2], rest[3]
        elif len(rest) == 3 and rest[0] == "namespaces":
            namespace, plural, name = rest[1], rest[2], None
        elif len(rest) == 2:
            plural, name = rest
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if plural not in KINDS or KINDS[plural][2] != (namespace is not None):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if KINDS[plural][0] != group_version:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return plural, namespace, name, query

    def authenticate(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        token = header[len("Bearer "):]
        args = self.server.store.args
        if args.static_token and hmac.compare_digest(token, args.static_token):
            return
        try:
            access_key, region = check_eks_token(token, args.keys, args.cluster)
        except (ValueError, UnicodeDecodeError) as error:
            sys.stderr.write(f"kube-standin: token refused: {error}\n")
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if args.moto:
            authorize(args, access_key, region)

    def handle_any(self, method):
        store = self.server.store
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/_standin/requests":
            with store.lock:
                return self.send_json(200, store.requests)
        try:
            self.authenticate()
            pods = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(?:/(portforward|log))?)?",
                                urllib.parse.urlsplit(self.path).path)
            if pods and method == "GET":
                return self.serve_pods(*pods.groups())
            plural, namespace, name, query = self.route()
            if name is None and method == "POST":
                try:
                    name = get_path(json.loads(raw or b"{}"), ("metadata", "name")) or ""
                    creating = True
                except ValueError:
                    raise ApiError(400, "BadRequest", "the body is not JSON")
            else:
                creating = False
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            with store.lock:
                store.requests.append({"method": method, "plural": plural, "namespace": namespace, "name": name,
                                       "content_type": content_type, "field_manager": query.get("fieldManager"),
                                       "force": query.get("force")})
                store.tick()
                if creating or name is None:
                    if not creating or plural != "jobs":
                        raise ApiError(405, "MethodNotAllowed", "this stand-in creates only Jobs by POST, and lists no collection but pods")
                    return self.send_json(*store.create_job(namespace, json.loads(raw)))
                key = store.key(plural, namespace, name)
                if method == "GET":
                    if key not in store.objects:
                        raise not_found(plural, name)
                    return self.send_json(200, store.render(key))
                if method == "DELETE":
                    if key not in store.objects:
                        raise not_found(plural, name)
                    store.start_delete(key)
                    store.tick()
                    if key in store.objects:
                        return self.send_json(200, store.render(key))
                    return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                                "details": {"name": name, "kind": plural}})
                if method == "PATCH":
                    try:
                        config = json.loads(raw or b"{}")
                    except ValueError:
                        raise ApiError(400, "BadRequest", "the body is not JSON (this stand-in reads YAML only in its JSON form)")
                    if content_type == "application/apply-patch+yaml":
                        manager = query.get("fieldManager")
                        if not manager:
                            raise ApiError(400, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
                        code, body = store.write(plural, namespace, name, config, manager,
                                                 query.get("force") == "true", "Apply")
                    elif content_type == "application/merge-patch+json":
                        code, body = store.write(plural, namespace, name, config,
                                                 query.get("fieldManager", "kubectl-edit"), False, "Update")
                    else:
                        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
                    return self.send_json(code, body)
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
        except ApiError as error:
            return self.send_json(error.code, error.body())

    def serve_pods(self, namespace, name, subresource):
        store = self.server.store
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        with store.lock:
            store.tick()
            if name is None:
                selector = {}
                for term in ",".join(query.get("labelSelector", [])).split(","):
                    if term:
                        if "=" not in term or "!=" in term:
                            raise ApiError(400, "BadRequest", f"this stand-in reads equality selectors only, not `{term}`")
                        key, value = term.split("=", 1)
                        selector[key.rstrip("=")] = value.lstrip("=")
                store.requests.append({"method": "GET", "plural": "pods", "namespace": namespace, "name": "",
                                       "label_selector": selector})
                items = store.pods(namespace, selector) + store.job_pods(namespace, selector)
                return self.send_json(200, {"apiVersion": "v1", "kind": "PodList",
                                            "metadata": {"resourceVersion": str(store.version)}, "items": items})
            pod = store.pod(namespace, name)
            if subresource is None:
                store.requests.append({"method": "GET", "plural": "pods", "namespace": namespace, "name": name})
                return self.send_json(200, pod)
            if subresource == "log":
                store.requests.append({"method": "GET", "plural": "pods", "namespace": namespace, "name": name,
                                       "subresource": "log"})
                job = store.job_runs.get(store.key("jobs", namespace, pod["metadata"]["labels"].get("job-name", "")))
                data = (job["log"] if job else "").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
        ports = [int(p) for value in query.get("ports", []) for p in value.split(",") if p.strip().isdigit()]
        if not ports:
            raise ApiError(400, "BadRequest", "query parameter \"port\" is required")
        declared = {port.get("containerPort") for c in pod["spec"].get("containers", []) for port in c.get("ports") or []}
        target = store.db_target(pod) if RELAY_PORT in declared else None
        ready = pod["status"]["conditions"][0]["status"] == "True"
        with store.lock:
            store.requests.append({"method": "GET", "plural": "pods", "namespace": namespace, "name": name,
                                   "subresource": "portforward", "ports": ports, "target": target})
        if not ready:
            raise ApiError(400, "BadRequest", f"pod {name} is not running (phase {pod['status']['phase']})")
        protocols = [p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        if (self.headers.get("Upgrade") or "").lower() != "websocket" or PORTFORWARD_PROTOCOL not in protocols:
            raise ApiError(400, "BadRequest", f"a port-forward here is a WebSocket with subprotocol {PORTFORWARD_PROTOCOL} (SPDY is not emulated)")
        accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WEBSOCKET_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", PORTFORWARD_PROTOCOL)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        forward(self.connection, ports, pod, target)

    def do_GET(self):
        self.handle_any("GET")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")


# --- port-forward over WebSocket (RFC 6455 framing; the kubelet's channel protocol) ---------

def send_frame(conn, opcode, payload):
    """One unmasked, unfragmented frame (a server never masks: RFC 6455, section 5.1)."""
    header = bytes([0x80 | opcode])
    if len(payload) < 126:
        header += bytes([len(payload)])
    elif len(payload) < 1 << 16:
        header += bytes([126]) + struct.pack(">H", len(payload))
    else:
        header += bytes([127]) + struct.pack(">Q", len(payload))
    conn.sendall(header + payload)


def take_frame(buffer):
    """(fin, opcode, payload, rest) of the first whole frame in `buffer`, or None. Client
    frames are masked (RFC 6455, section 5.3)."""
    if len(buffer) < 2:
        return None
    fin, opcode = buffer[0] & 0x80, buffer[0] & 0x0F
    masked, length, at = buffer[1] & 0x80, buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, at = struct.unpack(">H", buffer[2:4])[0], 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, at = struct.unpack(">Q", buffer[2:10])[0], 10
    mask = b""
    if masked:
        mask, at = buffer[at:at + 4], at + 4
    if len(buffer) < at + length:
        return None
    payload = buffer[at:at + length]
    if masked:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload, buffer[at + length:]


def forward(conn, ports, pod, target):
    """The kubelet's side of a WebSocket port-forward: per port i, channel 2i carries data
    and 2i+1 errors, each opened with the port number (2 bytes, little-endian); then bytes
    move between channel 0 and a connection to `target` until either side closes. One
    thread, select(): an SSL socket must not be read and written from two threads at once."""
    for index, port in enumerate(ports):
        for channel in (2 * index, 2 * index + 1):
            send_frame(conn, 2, bytes([channel]) + struct.pack("<H", port))
    name = pod["metadata"]["name"]
    upstream = None
    if target and ports[0] == RELAY_PORT:
        host, port = target.rsplit(":", 1)
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
            upstream.settimeout(None)
        except OSError as error:
            message = f"error forwarding port {ports[0]} to pod {name}: failed to connect to {target}: {error}"
            send_frame(conn, 2, bytes([1]) + message.encode())
    else:
        message = (f"error forwarding port {ports[0]} to pod {name}, uid : failed to connect to "
                   f"localhost:{ports[0]} inside namespace: connection refused")
        send_frame(conn, 2, bytes([1]) + message.encode())
    if upstream is None:
        send_frame(conn, 8, struct.pack(">H", 1000))
        return
    buffer, message = b"", b""
    try:
        while True:
            readable = [conn] if conn.pending() else select.select([conn, upstream], [], [], 300)[0]
            if not readable:
                break
            if conn in readable:
                data = conn.recv(65536)
                if not data:
                    break
                buffer += data
                closed = False
                while (frame := take_frame(buffer)) is not None:
                    fin, opcode, payload, buffer = frame
                    if opcode == 8:
                        closed = True
                        break
                    if opcode == 9:
                        send_frame(conn, 10, payload)
                        continue
                    if opcode in (0, 1, 2):
                        message += payload
                        if fin:
                            if len(message) > 1 and message[0] == 0:
                                upstream.sendall(message[1:])
                            message = b""
                if closed:
                    send_frame(conn, 8, struct.pack(">H", 1000))
                    break
            if upstream in readable:
                data = upstream.recv(65536)
                if not data:
                    send_frame(conn, 8, struct.pack(">H", 1000))
                    break
                send_frame(conn, 2, b"\x00" + data)
    except OSError:
        pass
    finally:
        upstream.close()


def make_certificates(directory):
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(os.path.join(directory, "server.pem")):
        return
    run = lambda *args: subprocess.run(args, cwd=directory, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=pwless kube stand-in CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "server.ext"), "w") as ext:
        ext.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where the CA and server certificate live")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cluster", required=True, help="the EKS cluster name tokens must name")
    parser.add_argument("--region", default="us-west-2")
    parser.add_argument("--aws-key", action="append", default=[], help="ACCESS_KEY_ID:SECRET a token may be signed with")
    parser.add_argument("--static-token", default=os.environ.get("KUBE_STANDIN_STATIC_TOKEN"))
    parser.add_argument("--moto", help="the sandbox's moto URL: callers then need an EKS access entry "
                                       "with AmazonEKSClusterAdminPolicy there (as on EKS)")
    parser.add_argument("--db-target", help="HOST:PORT a database relay pod's connection reaches "
                                            "(the sandbox PostgreSQL); port-forwards to its port 5432 go there")
    parser.add_argument("--db-route", action="append", default=[],
                        help="ENDPOINT=HOST:PORT: a relay pod whose DB_ENDPOINT is ENDPOINT reaches HOST:PORT "
                             "instead of --db-target (one sandbox PostgreSQL per database of a stack)")
    parser.add_argument("--job-runner", help="a JSON list: the command a Job's pod runs under, given "
                                             "`--as NAMESPACE/SERVICE_ACCOUNT -- BINARY ARGS...` "
                                             "(`pwless sandbox run -f STACK`)")
    parser.add_argument("--job-binary", help="what a Job's container runs, as no image can be pulled here "
                                             "(the pwless-demo executable)")
    parser.add_argument("--deploy-seconds", type=float, default=0.5)
    parser.add_argument("--lb-seconds", type=float, default=0.5)
    args = parser.parse_args()
    args.keys = dict(entry.split(":", 1) for entry in args.aws_key)
    args.routes = dict(entry.split("=", 1) for entry in args.db_route)
    make_certificates(args.dir)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.store = Store(args)
    server.store.url = f"https://127.0.0.1:{server.server_address[1]}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(args.dir, "server.pem"), os.path.join(args.dir, "server.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
