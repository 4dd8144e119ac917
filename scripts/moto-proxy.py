#!/usr/bin/env python3
"""A recording proxy in front of the moto sandbox, for tests and benchmarks.

It forwards every request to moto unchanged, after an optional fixed delay (to give the
emulator a real cloud's per-call latency), and records each call's service and action:

    python3 scripts/moto-proxy.py --upstream http://127.0.0.1:PORT [--port 0] [--latency-ms 50]
                                  [--delay ACTION=SECONDS ...]

`--delay CreateDBSubnetGroup=12` holds that one action's answers for 12 s more (a slow API
call, to see what a long wait looks like).

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
        with LOCK:
            CALLS.append({"service": service, "action": action, "method": self.command, "at": started})

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

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--delay", action="append", default=[], metavar="ACTION=SECONDS")
    args = parser.parse_args()
    Proxy.upstream = args.upstream
    Proxy.latency = args.latency_ms / 1000.0
    for delay in args.delay:
        action, _, seconds = delay.partition("=")
        Proxy.delays[action] = float(seconds)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Proxy)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
