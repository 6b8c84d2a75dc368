#!/usr/bin/env python3
"""Reference client for embd's HMAC request signing (Python standard library only).

The signature is HMAC-SHA256(secret, METHOD|PATH|hex(SHA256(body))|TIMESTAMP), hex-encoded,
sent as X-Embd-Signature together with X-Embd-Timestamp (Unix seconds). PATH is the request path
without the query string. The secret is the --hmac-secret-file's content without trailing
whitespace. A signature is accepted once, within --hmac-window (300 s) of the server's clock.

  # print the two headers (e.g. for curl -H)
  tools/embd-sign.py --secret-file secret --path /v1/embeddings --data '{"input":"hi"}'
  # sign and send; prints the status line and the body
  tools/embd-sign.py --secret-file secret --url http://127.0.0.1:8080/v1/embeddings --data '{"input":"hi"}'
  tools/embd-sign.py --secret-file secret --url http://127.0.0.1:8080/info --method GET
"""
import argparse
import hashlib
import hmac
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def load_secret(path):
    with open(path, "rb") as f:
        return f.read().rstrip(b" \t\r\n\v\f")


def signature(secret, method, path, body, timestamp):
    """Hex HMAC-SHA256 over the canonical message; body: bytes, timestamp: str or int."""
    msg = "|".join((method.upper(), path, hashlib.sha256(body).hexdigest(), str(timestamp))).encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def headers(secret, method, path, body, timestamp=None):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Embd-Timestamp": ts, "X-Embd-Signature": signature(secret, method, path, body, ts)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--method", help="default: POST with a body, GET without")
    ap.add_argument("--path", help="request path (taken from --url when given)")
    ap.add_argument("--url", help="send the signed request there")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--data", help="request body")
    g.add_argument("--body-file", help="request body from a file ('-': stdin)")
    ap.add_argument("--timestamp", type=int, help="default: now")
    ap.add_argument("--bearer", help="also send Authorization: Bearer <key>")
    a = ap.parse_args()
    if a.body_file:
        body = sys.stdin.buffer.read() if a.body_file == "-" else open(a.body_file, "rb").read()
    else:
        body = (a.data or "").encode()
    method = (a.method or ("POST" if (a.data is not None or a.body_file) else "GET")).upper()
    path = a.path or (urllib.parse.urlsplit(a.url).path if a.url else None)
    if not path:
        ap.error("--path or --url is needed")
    h = headers(load_secret(a.secret_file), method, path, body, a.timestamp)
    if a.bearer:
        h["Authorization"] = "Bearer " + a.bearer
    if not a.url:
        for k, v in h.items():
            print(f"{k}: {v}")
        return 0
    if body:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(a.url, data=body if (body or method == "POST") else None, method=method, headers=h)
    try:
        with urllib.request.urlopen(req) as r:
            print(r.status, r.reason, file=sys.stderr)
            sys.stdout.buffer.write(r.read() + b"\n")
            return 0
    except urllib.error.HTTPError as e:
        print(e.code, e.reason, file=sys.stderr)
        sys.stdout.buffer.write(e.read() + b"\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
