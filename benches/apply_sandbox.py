#!/usr/bin/env python3
"""Apply benchmark against the sandbox, with a real cloud's per-call latency injected.

    python3 benches/apply_sandbox.py [--latency-ms 50] [--compression 30] [--pwless target/release/pwless]

Starts moto (the pinned one, via scripts/sandbox install) behind scripts/moto-proxy.py, which
delays every call by --latency-ms, then:

1. applies examples/aws-only.yaml with --timings and compares the makespan with the critical
   path of the same run (the longest chain of operations, each as long as it really took):
   the difference is time the scheduler left ready work waiting (target: within 5% plus one
   poll interval, 0.5 s);
2. the same apply with --parallelism 1, for contrast;
3. a refreshed no-op plan, against --refresh=false (process and parsing cost) and against the
   slowest single read (2 sequential calls: a DB subnet group, then its tags);
4. with realistic provisioning times (PROVISIONING divided by --compression; a second moto keeps
   each resource creating that long: MOTO_PROVISION_SECONDS in scripts/moto-server.py), the
   same apply: makespan / ideal critical path, where the ideal counts each provisioned
   operation as exactly its provisioning time (target <= 1.1: readiness noticed within 5 % of
   each wait), and how late each wait noticed readiness.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Typical creation times on AWS, in seconds (as commonly reported: an EKS cluster about 10
# minutes, a managed node group 3 to 4, an Aurora PostgreSQL cluster 2 and its first instance
# about 8, a NAT gateway 1 to 2).
PROVISIONING = {"eks_cluster": 600, "eks_nodegroup": 210, "rds_cluster": 120, "rds_instance": 480, "nat_gateway": 90}
# Which provisioned kind an address is.
PROVISIONED = {"aws_eks_cluster.": "eks_cluster", "aws_eks_node_group.": "eks_nodegroup", "aws_rds_cluster.": "rds_cluster",
               "aws_rds_cluster_instance.": "rds_instance", "aws_nat_gateway.": "nat_gateway"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def critical_path(timings):
    longest = [0.0] * len(timings)
    for index in sorted(range(len(timings)), key=lambda i: timings[i]["start"]):
        item = timings[index]
        before = max((longest[j] for j in item["after"]), default=0.0)
        longest[index] = before + (item["end"] - item["start"])
    return max(longest, default=0.0)


class Sandbox:
    """moto (with pwless's additions; `moto_env` added to its environment) behind the latency
    proxy, warmed up."""

    def __init__(self, python, latency_ms, moto_env):
        self.moto_port = free_port()
        self.moto = subprocess.Popen([python, os.path.join(ROOT, "scripts", "moto-server.py"), "-H", "127.0.0.1", "-p", str(self.moto_port)],
                                     env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", **moto_env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "moto-proxy.py"), "--upstream",
                                       f"http://127.0.0.1:{self.moto_port}", "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
        wait_port(self.moto_port)
        self.endpoint = f"http://127.0.0.1:{int(self.proxy.stdout.readline())}"
        self.env = {**os.environ, "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "NO_COLOR": "1"}
        self.env.pop("AWS_SESSION_TOKEN", None)
        self.env.pop("AWS_PROFILE", None)
        # Every moto backend initialises on its first call (IAM loads the managed policies, EC2
        # its images): pay that before timing. (A signed call: moto routes unsigned requests to
        # S3. boto3 comes with moto's venv.)
        warm = ("import boto3\n"
                "c = lambda s: boto3.client(s, endpoint_url='http://127.0.0.1:%d', region_name='us-west-2', "
                "aws_access_key_id='testing', aws_secret_access_key='testing')\n"
                "c('iam').list_policies(MaxItems=1); c('ec2').describe_vpcs(); c('eks').list_clusters(); "
                "c('rds').describe_db_clusters(); c('sts').get_caller_identity()" % self.moto_port)
        subprocess.run([python, "-c", warm], check=True)

    def close(self):
        self.proxy.terminate()
        self.moto.terminate()
        self.proxy.wait()
        self.moto.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--compression", type=float, default=30.0,
                        help="realistic provisioning times divided by this (0: skip part 4)")
    parser.add_argument("--pwless", default=os.path.join(ROOT, "target", "release", "pwless"))
    args = parser.parse_args()
    if not os.path.exists(args.pwless):
        raise SystemExit(f"{args.pwless} is missing: cargo build --release (or pass --pwless)")

    moto_server = subprocess.run([os.path.join(ROOT, "scripts", "sandbox"), "install"], check=True, capture_output=True, text=True).stdout.strip()
    python = os.path.join(os.path.dirname(moto_server), "python")
    example = open(os.path.join(ROOT, "examples", "aws-only.yaml")).read()

    def run(sandbox, stack, *extra):
        env, endpoint = sandbox.env, sandbox.endpoint
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "stack.yaml")
            with open(path, "w") as handle:
                handle.write(example.replace("stack: iam-postgres", f"stack: {stack}"))
            timings_path = os.path.join(directory, "timings.json")
            started = time.time()
            subprocess.run([args.pwless, "apply", "-f", path, "--auto-approve", "--timings", timings_path, *extra], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.time() - started
            timings = json.load(open(timings_path))

            def timed(*command):
                started = time.time()
                subprocess.run([args.pwless, *command, "-f", path], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return time.time() - started

            no_refresh = timed("plan", "--refresh=false")
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/_proxy/reset", method="POST")).read()
            refreshed = timed("plan")
            calls = len(json.load(urllib.request.urlopen(f"{endpoint}/_proxy/calls")))
            # moto gives every EKS cluster the same OIDC issuer: clear the way for the next run.
            subprocess.run([args.pwless, "destroy", "-f", path, "--auto-approve"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return wall, timings, no_refresh, refreshed, calls

    sandbox = Sandbox(python, args.latency_ms, {})
    try:
        print(f"pwless apply benchmark, {args.latency_ms:.0f} ms injected per AWS call ({args.pwless})")
        wall, timings, no_refresh, refreshed, calls = run(sandbox, "bench-parallel")
        makespan = max(item["end"] for item in timings)
        path = critical_path(timings)
        slack = makespan - path
        print(f"  apply, {len(timings)} operations: makespan {makespan:.2f} s, critical path {path:.2f} s, "
              f"left waiting {slack:.2f} s ({100 * slack / path:.1f}%); whole command {wall:.2f} s")
        print(f"  target: makespan <= critical path x 1.05 + 0.5 s = {path * 1.05 + 0.5:.2f} s -> {'met' if makespan <= path * 1.05 + 0.5 else 'MISSED'}")
        wall1, timings1, *_ = run(sandbox, "bench-serial", "--parallelism", "1")
        print(f"  the same apply with --parallelism 1: makespan {max(item['end'] for item in timings1):.2f} s")
        # The longest chain of calls in one read: a DB subnet group, then its tags.
        slowest = 2 * args.latency_ms / 1000
        print(f"  no-op plan: {refreshed:.2f} s with refresh ({calls} reads), {no_refresh:.2f} s without; "
              f"refresh cost {refreshed - no_refresh:.2f} s vs slowest single read {slowest:.2f} s "
              f"(all {calls} reads in sequence: {calls * args.latency_ms / 1000:.2f} s)")
    finally:
        sandbox.close()

    if not args.compression:
        return
    provisioning = {kind: seconds / args.compression for kind, seconds in PROVISIONING.items()}
    knob = ",".join(f"{kind}={seconds:.2f}" for kind, seconds in provisioning.items())
    sandbox = Sandbox(python, args.latency_ms, {"MOTO_PROVISION_SECONDS": knob})
    try:
        wall, timings, *_ = run(sandbox, "bench-provisioned")
    finally:
        sandbox.close()
    ideal_timings, late = [], []
    for item in timings:
        kind = next((kind for prefix, kind in PROVISIONED.items() if item["address"].startswith(prefix)), None)
        took = item["end"] - item["start"]
        if kind and item.get("step") == "apply":
            wanted = provisioning[kind]
            late.append((item["address"], took, wanted))
            ideal_timings.append({**item, "end": item["start"] + wanted})
        else:
            ideal_timings.append(item)
    makespan = max(item["end"] for item in timings)
    ideal = critical_path(ideal_timings)
    ratio = makespan / ideal
    print(f"  with AWS's provisioning times / {args.compression:g} ({knob}):")
    print(f"    makespan {makespan:.2f} s, ideal critical path {ideal:.2f} s: {ratio:.3f}x (target <= 1.1: {'met' if ratio <= 1.1 else 'MISSED'})")
    for address, took, wanted in late:
        print(f"    {address}: ready after {wanted:.2f} s, noticed after {took:.2f} s ({100 * (took - wanted) / wanted:+.1f}%)")


if __name__ == "__main__":
    main()
