"""What the sandbox's stand-ins share (stdlib only): checking a SigV4 presigned URL, and
calling the sandbox's moto as a given access key.

Used by scripts/kube-standin.py (EKS tokens) and scripts/iam-verifier.py (RDS IAM tokens).
The signature is re-computed here independently of pwless's Rust signer, so a bug there
cannot vouch for itself.
"""

import datetime
import hashlib
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request


def presigned_signature(secret, region, service, stamp, query_pairs, headers):
    """The SigV4 signature of a presigned `GET /` with these (decoded) query pairs, the
    signature itself left out, and these signed headers."""
    signed = sorted(headers)
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query_pairs))
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    canonical_request = "\n".join(["GET", "/", canonical_query, canonical_headers,
                                   ";".join(signed), hashlib.sha256(b"").hexdigest()])
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signature_matches(signature, expected):
    return hmac.compare_digest(signature.encode(), expected.encode())


def age_seconds(stamp):
    """How old an `X-Amz-Date` stamp is now (negative: from the future)."""
    signed_at = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc)
    return (datetime.datetime.now(datetime.timezone.utc) - signed_at).total_seconds()


def moto_call(moto, access_key, region, service, path_and_query):
    """A call to the sandbox's moto, as `access_key` (moto reads the key from the header and
    checks no signature): (status, body)."""
    request = urllib.request.Request(moto.rstrip("/") + path_and_query, headers={
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/20260101/{region}/{service}/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def moto_json(moto, access_key, region, service, target, body):
    """A JSON-protocol call (`X-Amz-Target: target`, e.g. CloudWatch Logs') to the sandbox's
    moto, as `access_key`: (status, parsed body or None)."""
    request = urllib.request.Request(moto.rstrip("/") + "/", data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/20260101/{region}/{service}/aws4_request, "
                         "SignedHeaders=host, Signature=0"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None
    except urllib.error.HTTPError as error:
        data = error.read()
        try:
            return error.code, json.loads(data)
        except ValueError:
            return error.code, None


def rds_url_identifier(account, region):
    """The `<id>` of `<cluster>.cluster-<id>.<region>.rds.amazonaws.com` for the sandbox: 12
    lowercase letters and digits, one per account and region, as on RDS."""
    digest = hashlib.sha256(f"{account}/{region}".encode()).hexdigest()
    return "c" + digest[:11]


# The regions the sandbox's certificates name (scripts/pg-sandbox); the account is moto's.
SANDBOX_ACCOUNT = "123456789012"
SANDBOX_REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1")


if __name__ == "__main__":
    # `python3 sandbox_aws.py rds-names`: the DNS names of the sandbox PostgreSQL's certificate.
    import sys
    if sys.argv[1:] == ["rds-names"]:
        print(",".join(f"DNS:*.cluster-{rds_url_identifier(SANDBOX_ACCOUNT, region)}.{region}.rds.amazonaws.com"
                       for region in SANDBOX_REGIONS))
