#!/usr/bin/env python3
"""Sends a fixed number of signed `push` deliveries to a webhook URL and waits for every answer.

    send_pushes.py URL BODIES_FILE COUNT [--conns N] [--gap-ms MS] [--tag TAG]

BODIES_FILE holds one delivery per line, `sha256=<hex> <raw JSON body>` (what
`webhook_load.sh` writes). Each of N connections (keep-alive, HTTP/1.1) sends its share in turn,
waiting for the answer before the next; `--gap-ms` sleeps between one connection's requests
(one connection and a gap: every delivery alone, as at a modest rate). Prints
`sent=… accepted=… other=…` and exits 1 if any answer was not 202. Every wait is bounded
(a 120 s socket timeout: generous, for a server running under valgrind).
"""

import argparse
import http.client
import sys
import threading
import time
import urllib.parse


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("bodies")
    ap.add_argument("count", type=int)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--gap-ms", type=float, default=0.0)
    ap.add_argument("--tag", default=f"send-{int(time.time())}")
    a = ap.parse_args()
    lines = [l.split(b" ", 1) for l in open(a.bodies, "rb").read().splitlines() if l]
    u = urllib.parse.urlsplit(a.url)
    counts = {"accepted": 0, "other": 0}
    lock = threading.Lock()

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        for k in range(w, a.count, a.conns):
            sig, body = lines[k % len(lines)]
            conn.request("POST", u.path, body=body, headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": f"{a.tag}-{k}",
                "X-Hub-Signature-256": sig.decode(),
            })
            r = conn.getresponse()
            text = r.read()
            with lock:
                if r.status == 202 and b'"accepted"' in text:
                    counts["accepted"] += 1
                else:
                    counts["other"] += 1
            if a.gap_ms:
                time.sleep(a.gap_ms / 1000)
        conn.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"sent={a.count} accepted={counts['accepted']} other={counts['other']}")
    return 0 if counts["other"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
