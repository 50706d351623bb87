#!/usr/bin/env python3
"""Tiny HTTP server for the hybrid-alb EC2 target.

GET /ec2 answers 200 with a short text body; every other path answers 404.
The ALB health check uses GET /ec2 as well.

Configuration (environment first, then argv):
  PORT / argv[1]   TCP port to listen on (default 80)
  BIND_ADDRESS     address to bind (default 0.0.0.0)

This file is embedded verbatim in the UserData of ../template.yaml;
tests/python/stack/test_hybrid_alb_ec2_server.py checks that both copies are
identical; after editing this file run `python3 ec2/embed.py` to copy it in.
"""
import http.server
import os
import sys

BODY = b"hello from ec2\n"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "hybrid-alb-ec2/1"

    def _answer(self, send_body):
        path = self.path.split("?", 1)[0]
        if path == "/ec2":
            status, body = 200, BODY
        else:
            status, body = 404, b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    port = int(os.environ.get("PORT") or (sys.argv[1] if len(sys.argv) > 1 else 80))
    bind = os.environ.get("BIND_ADDRESS", "0.0.0.0")
    httpd = http.server.ThreadingHTTPServer((bind, port), Handler)
    print("listening on %s:%d" % (bind, httpd.server_address[1]), flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
