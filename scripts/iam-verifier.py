"""The part of RDS that checks IAM auth tokens, for the sandbox PostgreSQL (stdlib only).

PostgreSQL sends members of `rds_iam` to PAM (`hostssl all +rds_iam ... pam`); the PAM module
scripts/pam_pwless_iam.c asks the conversation for the password (whole: pam_exec would cut a
1,000-byte token at 511) and runs this program with the login role as --user and the password
on stdin. Exit 0 admits the login; anything else makes PostgreSQL answer
`PAM authentication failed for user "..."`, as RDS does. Why it refused goes to the log
(never the token):

    python3 iam-verifier.py CONFIG --user ROLE  < token

CONFIG is JSON: {"moto": URL, "credentials": FILE, "log": FILE, "admin_key": KEY}. The
credentials file maps access key ids to {"secret_access_key", "session_token"}: the sandbox
credentials that may sign tokens (moto issues STS credentials but never tells their secrets
again, so whoever obtains them registers them: `pwless sandbox run` does).

A token is admitted when, as on RDS:
1. it is `HOST:PORT/?Action=connect&DBUser=ROLE&X-Amz-...` for service `rds-db`, signed
   headers `host`, and DBUser is the login role;
2. it is inside its window: X-Amz-Date at most X-Amz-Expires (<= 900) seconds ago, at most
   5 minutes ahead;
3. its SigV4 signature is right for the registered secret of its access key, and its
   X-Amz-Security-Token is that key's session token (or absent, for a key without one);
4. HOST is the endpoint (or reader endpoint) of an Aurora cluster in moto with IAM database
   authentication enabled;
5. the caller (moto's STS GetCallerIdentity for the key: an assumed role or a user) has an
   identity-based policy allowing `rds-db:connect` on
   `arn:aws:rds-db:<region>:<account>:dbuser:<cluster resource id>/<ROLE>` with IAM's wildcard
   semantics (`*`, `?`; actions case-insensitive), and none denying it.
A refusal is also written, as RDS exports it, to CloudWatch Logs in moto when the cluster the
token names exports `iam-db-auth-error`: log group `/aws/rds/cluster/<cluster>/iam-db-auth-error`,
stream the cluster's first instance, message `<time> [ERROR] Failed to authenticate the
connection request for user '<user>' because <reason>`, or `Failed to authorize ...` when the
token is good but no policy allows the login, as RDS words a 403 (the reason in this
verifier's words, not RDS's).

Not emulated: policy conditions (an Allow with a Condition is not honoured; a Deny with one
is), permission boundaries, SCPs, resource policies, group policies.
"""

import datetime
import json
import os
import re
import sys
import urllib.parse
import xml.etree.ElementTree as ElementTree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_aws import age_seconds, moto_call, moto_json, presigned_signature, signature_matches  # noqa: E402

MAX_EXPIRES = 900
SKEW = 300


class Refused(Exception):
    pass


class NotAuthorized(Refused):
    """The token is good, but no identity policy allows `rds-db:connect` on the dbuser ARN."""


def xml_texts(body, tag):
    """Every text of elements named `tag` (namespaces ignored)."""
    root = ElementTree.fromstring(body)
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == tag]


def query_api(config, service, region, params, key=None):
    query = urllib.parse.urlencode(params)
    status, body = moto_call(config["moto"], key or config["admin_key"], region, service, f"/?{query}")
    if status != 200:
        raise Refused(f"{service} {params.get('Action')} answered {status}")
    return body


def check_token(token, user, credentials):
    """(access key, region, host) of a well-formed, current, correctly signed token."""
    if "/?" not in token:
        raise Refused("the password is not an IAM auth token")
    host_port, query = token.split("/?", 1)
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise Refused("the token names no host:port")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    params = dict(pairs)
    if len(params) != len(pairs):
        raise Refused("the token repeats a parameter")
    if params.get("Action") != "connect":
        raise Refused("the token is not for Action=connect")
    if params.get("DBUser") != user:
        raise Refused(f"the token is for database user {params.get('DBUser')!r}, not {user!r}")
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or params.get("X-Amz-SignedHeaders") != "host":
        raise Refused("the token is not a SigV4 presign of the host header")
    try:
        access_key, date, region, service, terminal = params["X-Amz-Credential"].split("/")
        expires = int(params["X-Amz-Expires"])
        stamp = params["X-Amz-Date"]
        age = age_seconds(stamp)
    except (KeyError, ValueError):
        raise Refused("the token's credential scope, date or expiry is malformed")
    if service != "rds-db" or terminal != "aws4_request" or date != stamp[:8]:
        raise Refused("the token is not signed for rds-db")
    if not 0 < expires <= MAX_EXPIRES:
        raise Refused(f"the token's expiry {expires} s is over {MAX_EXPIRES} s")
    if age > expires:
        raise Refused(f"the token expired {int(age - expires)} s ago")
    if age < -SKEW:
        raise Refused("the token is from the future")
    registered = credentials.get(access_key)
    if registered is None:
        raise Refused(f"access key {access_key} is not one the sandbox issued")
    if params.get("X-Amz-Security-Token") != registered.get("session_token"):
        raise Refused(f"the session token does not belong to access key {access_key}")
    # Host names are case-insensitive: RDS, as botocore signs, checks the host in lower case.
    signed_host = host.lower() if port == "443" else f"{host.lower()}:{port}"
    expected = presigned_signature(registered["secret_access_key"], region, "rds-db", stamp,
                                   [(k, v) for k, v in pairs if k != "X-Amz-Signature"],
                                   {"host": signed_host})
    if not signature_matches(params.get("X-Amz-Signature", ""), expected):
        raise Refused("the signature does not match (tampered, or signed with another secret)")
    return access_key, region, host


def cluster_resource_id(config, region, host):
    body = query_api(config, "rds", region, {"Action": "DescribeDBClusters", "Version": "2014-10-31"})
    root = ElementTree.fromstring(body)
    for cluster in root.iter():
        if cluster.tag.rsplit("}", 1)[-1] != "DBCluster":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in cluster}
        if host in (fields.get("Endpoint"), fields.get("ReaderEndpoint")):
            if fields.get("IAMDatabaseAuthenticationEnabled") != "true":
                raise Refused(f"IAM database authentication is off on cluster {fields.get('DBClusterIdentifier')}")
            return fields["DbClusterResourceId"]
    raise Refused(f"no Aurora cluster has the endpoint {host}")


def export_refusal(config, token, user, refusal, now):
    """Writes the refusal to the cluster's `iam-db-auth-error` log group in moto when the
    cluster the token's host names exports it; nothing when the token names no cluster."""
    host = token.split("/?", 1)[0].rpartition(":")[0]
    params = dict(urllib.parse.parse_qsl(token.split("/?", 1)[-1]))
    scope = params.get("X-Amz-Credential", "").split("/")
    region = scope[2] if len(scope) == 5 else "us-west-2"
    body = query_api(config, "rds", region, {"Action": "DescribeDBClusters", "Version": "2014-10-31"})
    for cluster in ElementTree.fromstring(body).iter():
        if cluster.tag.rsplit("}", 1)[-1] != "DBCluster":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: child for child in cluster}
        text = lambda name: (fields[name].text or "") if name in fields else ""
        if host.lower() not in (text("Endpoint").lower(), text("ReaderEndpoint").lower()):
            continue
        exports = [e.text for e in fields.get("EnabledCloudwatchLogsExports", [])]
        if "iam-db-auth-error" not in exports:
            return
        members = [e.text for e in cluster.iter() if e.tag.rsplit("}", 1)[-1] == "DBInstanceIdentifier"]
        group = f"/aws/rds/cluster/{text('DBClusterIdentifier')}/iam-db-auth-error"
        stream = members[0] if members else text("DBClusterIdentifier")
        logs = lambda target, body: moto_json(config["moto"], config["admin_key"], region, "logs",
                                              f"Logs_20140328.{target}", body)
        logs("CreateLogGroup", {"logGroupName": group})
        logs("CreateLogStream", {"logGroupName": group, "logStreamName": stream})
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S,") + f"{now.microsecond // 1000:03d}"
        verb = "authorize" if isinstance(refusal, NotAuthorized) else "authenticate"
        message = f"{stamp} [ERROR] Failed to {verb} the connection request for user '{user}' because {refusal}"
        logs("PutLogEvents", {"logGroupName": group, "logStreamName": stream,
                              "logEvents": [{"timestamp": int(now.timestamp() * 1000), "message": message}]})
        return


def documents(config, region, caller):
    """The identity-based policy documents of the caller (an assumed role or a user)."""
    role = re.match(r"arn:[^:]+:sts::\d{12}:assumed-role/([^/]+)/", caller)
    user = re.match(r"arn:[^:]+:(?:iam|sts)::\d{12}:user/(?:.*/)?([^/]+)$", caller)
    if role:
        kind, name = "Role", role[1]
    elif user:
        kind, name = "User", user[1]
    else:
        raise Refused(f"caller {caller} is neither a role session nor a user")
    found = []
    params = {"Action": f"List{kind}Policies", f"{kind}Name": name, "Version": "2010-05-08"}
    status, body = moto_call(config["moto"], config["admin_key"], region, "iam", "/?" + urllib.parse.urlencode(params))
    if status == 404:
        raise Refused(f"{caller} has no IAM policies ({kind.lower()} {name} is not in IAM)")
    names = xml_texts(body, "member") if status == 200 else []
    for policy in names:
        body = query_api(config, "iam", region, {"Action": f"Get{kind}Policy", f"{kind}Name": name, "PolicyName": policy, "Version": "2010-05-08"})
        found.append(urllib.parse.unquote(xml_texts(body, "PolicyDocument")[0]))
    attached = xml_texts(query_api(config, "iam", region, {"Action": f"ListAttached{kind}Policies", f"{kind}Name": name, "Version": "2010-05-08"}), "PolicyArn")
    for arn in attached:
        version = xml_texts(query_api(config, "iam", region, {"Action": "GetPolicy", "PolicyArn": arn, "Version": "2010-05-08"}), "DefaultVersionId")[0]
        body = query_api(config, "iam", region, {"Action": "GetPolicyVersion", "PolicyArn": arn, "VersionId": version, "Version": "2010-05-08"})
        found.append(urllib.parse.unquote(xml_texts(body, "Document")[0]))
    return [json.loads(document) for document in found]


def as_list(value):
    return value if isinstance(value, list) else [value]


def matches(patterns, value, case_sensitive):
    for pattern in as_list(patterns):
        if not case_sensitive:
            pattern, candidate = pattern.lower(), value.lower()
        else:
            candidate = value
        # IAM wildcards: * and ?, nothing else special.
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        if re.fullmatch(regex, candidate, flags=re.DOTALL):
            return True
    return False


def statement_applies(statement, action, resource):
    if "Action" in statement:
        action_ok = matches(statement["Action"], action, case_sensitive=False)
    else:
        action_ok = not matches(statement.get("NotAction", []), action, case_sensitive=False)
    if "Resource" in statement:
        resource_ok = matches(statement["Resource"], resource, case_sensitive=True)
    else:
        resource_ok = not matches(statement.get("NotResource", []), resource, case_sensitive=True)
    return action_ok and resource_ok


def allowed(policies, action, resource):
    allow = False
    for policy in policies:
        for statement in as_list(policy.get("Statement", [])):
            if not statement_applies(statement, action, resource):
                continue
            if statement.get("Effect") == "Deny":
                return False, "an explicit Deny"
            if statement.get("Effect") == "Allow" and "Condition" not in statement:
                allow = True
    return allow, "no policy allows it"


def verify(config, user, token):
    with open(config["credentials"]) as handle:
        credentials = json.load(handle)
    access_key, region, host = check_token(token, user, credentials)
    resource_id = cluster_resource_id(config, region, host)
    body = query_api(config, "sts", region, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, key=access_key)
    caller, account = xml_texts(body, "Arn")[0], xml_texts(body, "Account")[0]
    partition = "aws-us-gov" if region.startswith("us-gov-") else "aws-cn" if region.startswith("cn-") else "aws"
    arn = f"arn:{partition}:rds-db:{region}:{account}:dbuser:{resource_id}/{user}"
    ok, why = allowed(documents(config, region, caller), "rds-db:connect", arn)
    if not ok:
        raise NotAuthorized(f"{caller} may not rds-db:connect on {arn}: {why}")
    return caller, arn


def main():
    if len(sys.argv) != 4 or sys.argv[2] != "--user":
        sys.stderr.write("usage: iam-verifier.py CONFIG --user ROLE < token\n")
        return 2
    with open(sys.argv[1]) as handle:
        config = json.load(handle)
    user = sys.argv[3]
    token = sys.stdin.read().strip()
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        caller, arn = verify(config, user, token)
        line, code = f"{stamp} admitted {user}: {caller} may rds-db:connect on {arn}", 0
    except Refused as refusal:
        line, code = f"{stamp} refused {user}: {refusal}", 1
        try:
            export_refusal(config, token, user, refusal, now)
        except Exception as error:  # the export is the log's, never the login's business
            line += f" (not exported to CloudWatch Logs: {type(error).__name__}: {error})"
    except Exception as error:  # a verifier bug refuses, and says so
        line, code = f"{stamp} refused {user}: verifier error {type(error).__name__}: {error}", 1
    with open(config["log"], "a") as log:
        log.write(line + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
