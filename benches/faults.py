#!/usr/bin/env python3
"""Fault benchmark: pwless against AWS on a bad day, over many seeds, and killed at every
checkpoint of a run.

    python3 benches/faults.py [--seeds 20] [--pwless target/release/pwless] [--kills] [--verbose]

Starts a moto (the pinned one, via scripts/sandbox install) per round, behind
scripts/moto-proxy.py with seeded faults: 15 % of calls throttled, 5 % answered 500 without
effect, 15 % of changing calls carried out with their answer lost. A round survives when:

- apply converges within two runs through the faults;
- each resource of examples/aws-only.yaml exists exactly once in moto (counted by its
  `pwless:stack` tag, through moto directly);
- a refreshed plan (through moto directly) shows no changes;
- destroy converges within two runs through the faults and leaves nothing tagged.

With --kills it then applies with no faults, kills the run (SIGKILL) at each state checkpoint
in turn (its 1st, 2nd, ... write: each is one write, a pending operation or a result), lets the
next apply finish, checks the same, and destroys, until a run finishes before its kill point.
Prints rounds run / survived; with --strict, exits 1 unless every round survived. The test suite
runs two fault seeds (tests/it/aws.rs, `runs_through_throttling_errors_and_lost_answers_...`),
and scripts/test runs the kills at every checkpoint (`--seeds 0 --kills --strict`, the debug
binary).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apply_sandbox import free_port, wait_port  # noqa: E402  (the same helpers, not a copy)
FAULTS = ["--throttle-rate", "0.15", "--error-rate", "0.05", "--lose-rate", "0.15"]
COUNT = """
import boto3, json, sys
endpoint, stack = sys.argv[1], sys.argv[2]
c = lambda s: boto3.client(s, endpoint_url=endpoint, region_name='us-west-2',
                           aws_access_key_id='testing', aws_secret_access_key='testing')
ec2, iam, eks, rds = c('ec2'), c('iam'), c('eks'), c('rds')
mine = [{'Name': 'tag:pwless:stack', 'Values': [stack]}]
tagged = lambda tags: any(t.get('Key') == 'pwless:stack' and t.get('Value') == stack for t in tags or [])
counts = {
  'vpc': len(ec2.describe_vpcs(Filters=mine)['Vpcs']),
  'subnet': len(ec2.describe_subnets(Filters=mine)['Subnets']),
  'internet gateway': len(ec2.describe_internet_gateways(Filters=mine)['InternetGateways']),
  'route table': len(ec2.describe_route_tables(Filters=mine)['RouteTables']),
  'security group': len(ec2.describe_security_groups(Filters=mine)['SecurityGroups']),
  'elastic ip': len(ec2.describe_addresses(Filters=mine)['Addresses']),
  'nat gateway': len([g for g in ec2.describe_nat_gateways()['NatGateways']
                      if g['State'] in ('pending', 'available') and tagged(g.get('Tags'))]),
  'iam role': len([r for r in iam.list_roles()['Roles'] if r['RoleName'].startswith(stack + '-')]),
  'eks cluster': len([n for n in eks.list_clusters()['clusters'] if n.startswith(stack)]),
  'aurora cluster': len([d for d in rds.describe_db_clusters()['DBClusters'] if tagged(d.get('TagList'))]),
  'aurora instance': len([d for d in rds.describe_db_instances()['DBInstances'] if tagged(d.get('TagList'))]),
}
print(json.dumps(counts))
"""


class Sandbox:
    """One moto, and a proxy in front of it with `options`."""

    def __init__(self, python, options):
        self.python = python
        port = free_port()
        self.direct = f"http://127.0.0.1:{port}"
        self.moto = subprocess.Popen([python, os.path.join(ROOT, "scripts", "moto-server.py"), "-H", "127.0.0.1", "-p", str(port)],
                                     env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        self.proxy = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "moto-proxy.py"), "--upstream", self.direct, *options],
                                      stdout=subprocess.PIPE, text=True)
        self.faulty = f"http://127.0.0.1:{int(self.proxy.stdout.readline())}"

    def counts(self, stack):
        out = subprocess.run([self.python, "-c", COUNT, self.direct, stack], check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    def close(self):
        for process in (self.proxy, self.moto):
            process.terminate()
            process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--pwless", default=os.path.join(ROOT, "target", "release", "pwless"))
    parser.add_argument("--kills", action="store_true", help="also kill a run at every checkpoint")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 unless every round survived (scripts/test runs the kills so)")
    parser.add_argument("--verbose", action="store_true", help="say why a run that needed a second one failed")
    args = parser.parse_args()
    if not os.path.exists(args.pwless):
        raise SystemExit(f"{args.pwless} is missing: cargo build --release (or pass --pwless)")
    moto_server = subprocess.run([os.path.join(ROOT, "scripts", "sandbox"), "install"], check=True, capture_output=True,
                                 text=True).stdout.strip()
    python = os.path.join(os.path.dirname(moto_server), "python")
    example = open(os.path.join(ROOT, "examples", "aws-only.yaml")).read()

    def environment(endpoint):
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "NO_COLOR": "1"}
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_PROFILE", None)
        return env

    def pwless(path, endpoint, *command):
        return subprocess.run([args.pwless, command[0], "-f", path, *command[1:]], env=environment(endpoint),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def converge(path, endpoint, *command):
        for run in (1, 2):
            result = pwless(path, endpoint, *command)
            if result.returncode == 0:
                return run
            if args.verbose:
                errors = [line for line in result.stderr.splitlines() if "fail" in line or line.startswith("error")]
                print(f"    {command[0]} run {run} failed: " + " | ".join(errors[-4:]))
        return None

    expected = None
    run, survived, failures = 0, 0, []
    print(f"pwless fault benchmark: {args.seeds} seeds, faults {' '.join(FAULTS)} ({args.pwless})")
    for seed in range(1, args.seeds + 1):
        sandbox = Sandbox(python, ["--seed", str(seed), *FAULTS])
        stack = f"faults{seed}"
        try:
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "stack.yaml")
                with open(path, "w") as handle:
                    handle.write(example.replace("stack: iam-postgres", f"stack: {stack}"))
                run += 1
                applied = converge(path, sandbox.faulty, "apply", "--auto-approve")
                counts = sandbox.counts(stack)
                expected = expected or (counts if applied else None)
                clean = pwless(path, sandbox.direct, "plan", "--detailed-exitcode").returncode == 0
                destroyed = converge(path, sandbox.faulty, "destroy", "--auto-approve")
                left = {kind: n for kind, n in sandbox.counts(stack).items() if n}
                ok = applied and counts == expected and clean and destroyed and not left
                survived += bool(ok)
                print(f"  seed {seed:>3}: apply {'in %d run(s)' % applied if applied else 'FAILED'}, "
                      f"{'exactly once' if counts == expected else 'COUNTS ' + json.dumps(counts)}, "
                      f"plan {'clean' if clean else 'NOT CLEAN'}, destroy {'in %d run(s)' % destroyed if destroyed else 'FAILED'}"
                      f"{', left ' + json.dumps(left) if left else ''}")
                if not ok:
                    failures.append(f"seed {seed}")
        finally:
            sandbox.close()
    print(f"faults: {run} rounds run, {survived} survived")

    if args.kills:
        sandbox = Sandbox(python, [])
        kills_run, kills_survived = 0, 0
        try:
            with tempfile.TemporaryDirectory() as directory:
                path = os.path.join(directory, "stack.yaml")
                state = os.path.join(directory, "state", "kills.json")
                with open(path, "w") as handle:
                    handle.write(example.replace("stack: iam-postgres", "stack: kills"))
                if expected is None:
                    # No fault rounds ran: one clean apply says what "exactly once" is.
                    converge(path, sandbox.faulty, "apply", "--auto-approve")
                    expected = sandbox.counts("kills")
                    converge(path, sandbox.faulty, "destroy", "--auto-approve")
                point = 1
                while True:
                    # Kill points are counted from this run's first write: the state's serial
                    # goes on across runs.
                    try:
                        start = json.load(open(state)).get("serial", 0)
                    except (OSError, ValueError):
                        start = 0
                    serial = start + point
                    process = subprocess.Popen([args.pwless, "apply", "-f", path, "--auto-approve"], env=environment(sandbox.faulty),
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    reached = False
                    while process.poll() is None:
                        try:
                            if json.load(open(state)).get("serial", 0) >= serial:
                                reached = True
                                process.send_signal(signal.SIGKILL)
                                break
                        except (OSError, ValueError):
                            pass
                        time.sleep(0.01)
                    process.wait()
                    if not reached:
                        break
                    kills_run += 1
                    finished = converge(path, sandbox.faulty, "apply", "--auto-approve")
                    counts = sandbox.counts("kills")
                    clean = pwless(path, sandbox.direct, "plan", "--detailed-exitcode").returncode == 0
                    ok = finished and counts == expected and clean
                    kills_survived += bool(ok)
                    if not ok:
                        print(f"  killed at write {point}: apply {finished}, counts {json.dumps(counts)}, plan clean {clean}")
                    destroyed = converge(path, sandbox.faulty, "destroy", "--auto-approve")
                    if not destroyed:
                        print(f"  killed at write {point}: destroy FAILED")
                        break
                    point += 1
        finally:
            sandbox.close()
        print(f"kills: {kills_run} rounds run (one per checkpoint), {kills_survived} survived")
    if args.kills and kills_run != kills_survived:
        failures.append(f"{kills_run - kills_survived} kill round(s)")
    if args.kills and kills_run == 0:
        failures.append("no kill round ran")
    if failures:
        print("failed: " + ", ".join(failures))
        if args.strict:
            sys.exit(1)


if __name__ == "__main__":
    main()
