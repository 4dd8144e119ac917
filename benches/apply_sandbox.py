#!/usr/bin/env python3
"""Apply benchmark against the sandbox, with a real cloud's per-call latency injected.

    python3 benches/apply_sandbox.py [--latency-ms 50] [--pwless target/release/pwless]

Starts moto (the pinned one, via scripts/sandbox install) behind scripts/moto-proxy.py, which
delays every call by --latency-ms, then:

1. applies examples/aws-only.yaml with --timings and compares the makespan with the critical
   path of the same run (the longest chain of operations, each as long as it really took):
   the difference is time the scheduler left ready work waiting (target: within 5% plus one
   poll interval, 0.5 s);
2. the same apply with --parallelism 1, for contrast;
3. a refreshed no-op plan, against --refresh=false (process and parsing cost) and against the
   slowest single read (2 sequential calls: a DB subnet group, then its tags).
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--pwless", default=os.path.join(ROOT, "target", "release", "pwless"))
    args = parser.parse_args()
    if not os.path.exists(args.pwless):
        raise SystemExit(f"{args.pwless} is missing: cargo build --release (or pass --pwless)")

    moto_server = subprocess.run([os.path.join(ROOT, "scripts", "sandbox"), "install"], check=True, capture_output=True, text=True).stdout.strip()
    moto_port = free_port()
    moto = subprocess.Popen([os.path.join(os.path.dirname(moto_server), "python"), os.path.join(ROOT, "scripts", "moto-server.py"),
                             "-H", "127.0.0.1", "-p", str(moto_port)], env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "moto-proxy.py"), "--upstream", f"http://127.0.0.1:{moto_port}",
                              "--latency-ms", str(args.latency_ms)], stdout=subprocess.PIPE, text=True)
    try:
        wait_port(moto_port)
        proxy_port = int(proxy.stdout.readline())
        endpoint = f"http://127.0.0.1:{proxy_port}"
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "NO_COLOR": "1"}
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_PROFILE", None)
        # moto loads the AWS managed policies on its first IAM call: pay that before timing.
        # (A signed call: moto routes unsigned requests to S3. boto3 comes with moto's venv.)
        # Every moto backend initialises on its first call (IAM loads the managed policies, EC2
        # its images): pay that before timing.
        warm = ("import boto3\n"
                "c = lambda s: boto3.client(s, endpoint_url='http://127.0.0.1:%d', region_name='us-west-2', "
                "aws_access_key_id='testing', aws_secret_access_key='testing')\n"
                "c('iam').list_policies(MaxItems=1); c('ec2').describe_vpcs(); c('eks').list_clusters(); "
                "c('rds').describe_db_clusters(); c('sts').get_caller_identity()" % moto_port)
        subprocess.run([os.path.join(os.path.dirname(moto_server), "python"), "-c", warm], check=True)

        print(f"pwless apply benchmark, {args.latency_ms:.0f} ms injected per AWS call ({args.pwless})")
        example = open(os.path.join(ROOT, "examples", "aws-only.yaml")).read()

        def run(stack, *extra):
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

        wall, timings, no_refresh, refreshed, calls = run("bench-parallel")
        makespan = max(item["end"] for item in timings)
        path = critical_path(timings)
        slack = makespan - path
        print(f"  apply, {len(timings)} operations: makespan {makespan:.2f} s, critical path {path:.2f} s, "
              f"left waiting {slack:.2f} s ({100 * slack / path:.1f}%); whole command {wall:.2f} s")
        print(f"  target: makespan <= critical path x 1.05 + 0.5 s = {path * 1.05 + 0.5:.2f} s -> {'met' if makespan <= path * 1.05 + 0.5 else 'MISSED'}")
        wall1, timings1, *_ = run("bench-serial", "--parallelism", "1")
        print(f"  the same apply with --parallelism 1: makespan {max(item['end'] for item in timings1):.2f} s")
        # The longest chain of calls in one read: a DB subnet group, then its tags.
        slowest = 2 * args.latency_ms / 1000
        print(f"  no-op plan: {refreshed:.2f} s with refresh ({calls} reads), {no_refresh:.2f} s without; "
              f"refresh cost {refreshed - no_refresh:.2f} s vs slowest single read {slowest:.2f} s "
              f"(all {calls} reads in sequence: {calls * args.latency_ms / 1000:.2f} s)")
    finally:
        proxy.terminate()
        moto.terminate()
        proxy.wait()
        moto.wait()


if __name__ == "__main__":
    main()
