#!/usr/bin/env python3
"""A recording proxy in front of the moto sandbox, for tests and benchmarks.

It forwards every request to moto unchanged, after an optional fixed delay (to give the
emulator a real cloud's per-call latency), and records each call's service and action:

    python3 scripts/moto-proxy.py --upstream http://127.0.0.1:PORT [--port 0] [--latency-ms 50]
                                  [--delay ACTION=SECONDS ...] [--lose ACTION=COUNT ...]
                                  [--seed N] [--throttle-rate R] [--error-rate R] [--lose-rate R]

`--delay CreateDBSubnetGroup=12` holds that one action's answers for 12 s more (a slow API
call, to see what a long wait looks like).

`--lose CreateVpc=1` loses the answer of that action's first call (`=N`: its first N calls):
the request reaches moto and takes effect, then the proxy hangs up without answering, as a
dropped connection or a timeout after the request was sent does on AWS. The caller cannot
tell whether the change happened.

AWS on a bad day, at random from `--seed N` (the same seed, the same faults for the same
sequence of calls):
  `--throttle-rate R`  answers a call's throttling error instead of forwarding it (EC2's
                       RequestLimitExceeded, IAM/RDS/STS's Throttling, EKS's 429
                       ThrottlingException, S3's 503 SlowDown), in the service's own shape;
  `--error-rate R`     answers 500 InternalError (InternalFailure for EKS) without forwarding;
  `--lose-rate R`      forwards a call that changes something, then loses its answer.

It prints its own port on the first line of stdout once listening. GET /_proxy/calls returns
the recorded calls as JSON; POST /_proxy/reset forgets them. Standard library only.
"""

import argparse
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CALLS = []
LOCK = threading.Lock()
SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None
    latency = 0.0
    delays = {}
    lose = {}  # action -> how many more of its answers to lose
    random = None  # random.Random(seed) when any rate is set
    throttle_rate = error_rate = lose_rate = 0.0

    def handle(self):
        # A caller that hangs up (a killed run) is no error of ours: nothing to print.
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass

    def _reply(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_proxy/"):
            if self.path == "/_proxy/calls":
                with LOCK:
                    return self._reply(200, json.dumps(CALLS).encode())
            if self.path == "/_proxy/reset":
                with LOCK:
                    CALLS.clear()
                return self._reply(200, b"{}")
            return self._reply(404, b"{}")

        match = SCOPE.search(self.headers.get("Authorization", ""))
        service = match.group(1) if match else "unknown"
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        form = {}
        if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        action = (form.get("Action") or query.get("Action") or [None])[0]
        if action is None:  # REST services (EKS): the method and path say what it is
            action = f"{self.command} {urllib.parse.urlsplit(self.path).path}"
        started = time.time()
        record = {"service": service, "action": action, "method": self.command, "at": started}
        with LOCK:
            CALLS.append(record)

        fault = None
        if self.random is not None and not self.path.startswith("/_proxy/"):
            with LOCK:
                draw = self.random.random()
            if draw < self.throttle_rate:
                fault = "throttle"
            elif draw < self.throttle_rate + self.error_rate:
                fault = "error"
            elif draw < self.throttle_rate + self.error_rate + self.lose_rate and _changes(action):
                fault = "lose"
            if fault:
                with LOCK:
                    record["fault"] = fault
        if fault in ("throttle", "error"):
            return self._fault(service, fault)

        if self.latency:
            time.sleep(self.latency)
        if action in self.delays:
            time.sleep(self.delays[action])
        target = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
        headers = {key: value for key, value in self.headers.items() if key.lower() not in ("connection",)}
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        with LOCK:
            lost = self.lose.get(action, 0) > 0 or fault == "lose"
            if self.lose.get(action, 0) > 0:
                self.lose[action] -= 1
            if lost:
                record["lost"] = True
        if lost:
            # The change happened upstream; the caller gets no answer at all.
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        try:
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The caller went away (a killed run): the change happened upstream all the same
            # and its answer is lost, as on AWS. Nothing to report.
            self.close_connection = True

    def _fault(self, service, fault):
        """A throttling or internal error in the shape of `service`'s protocol (the SDK reads
        the code from it, so it must be the service's own)."""
        request_id = "pwless-proxy-fault"
        if service in ("eks", "secretsmanager"):  # JSON protocols: the code in a header and __type
            if service == "eks":
                code, status = ("ThrottlingException", 429) if fault == "throttle" else ("InternalFailure", 500)
            else:
                code, status = ("ThrottlingException", 400) if fault == "throttle" else ("InternalServiceError", 500)
            body = json.dumps({"__type": code, "message": f"{code} (injected by moto-proxy)"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-ErrorType", code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if service == "s3":
            code, status = ("SlowDown", 503) if fault == "throttle" else ("InternalError", 500)
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                    f"<Message>injected by moto-proxy</Message><RequestId>{request_id}</RequestId></Error>")
            return self._reply(status, body.encode(), "application/xml")
        if service == "ec2":
            code = "RequestLimitExceeded" if fault == "throttle" else "InternalError"
            status = 503 if fault == "throttle" else 500
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                    f"<Message>injected by moto-proxy</Message></Error></Errors>"
                    f"<RequestID>{request_id}</RequestID></Response>")
            return self._reply(status, body.encode(), "text/xml")
        code = "Throttling" if fault == "throttle" else "InternalFailure"
        status = 400 if fault == "throttle" else 500
        body = (f"<ErrorResponse><Error><Type>{'Sender' if fault == 'throttle' else 'Receiver'}</Type>"
                f"<Code>{code}</Code><Message>injected by moto-proxy</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>")
        return self._reply(status, body.encode(), "text/xml")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


def _changes(action):
    """Whether a call changes something (what a lost answer makes ambiguous)."""
    reads = ("Describe", "Get", "List", "GET ", "HEAD ")
    return action is not None and not action.startswith(reads)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--delay", action="append", default=[], metavar="ACTION=SECONDS")
    parser.add_argument("--lose", action="append", default=[], metavar="ACTION=COUNT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--lose-rate", type=float, default=0.0)
    args = parser.parse_args()
    if args.throttle_rate or args.error_rate or args.lose_rate:
        import random
        Proxy.random = random.Random(args.seed)
        Proxy.throttle_rate, Proxy.error_rate, Proxy.lose_rate = (
            args.throttle_rate, args.error_rate, args.lose_rate)
    Proxy.upstream = args.upstream
    Proxy.latency = args.latency_ms / 1000.0
    for delay in args.delay:
        action, _, seconds = delay.partition("=")
        Proxy.delays[action] = float(seconds)
    for lose in args.lose:
        action, _, count = lose.partition("=")
        Proxy.lose[action] = int(count or 1)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Proxy)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
