"""Redaction throughput: job output through the agent's stream redactor, in 64 KiB reads.

The output is log-like text (timestamps, JSON lines, URLs, base64 blobs, hex digests) that
holds none of the secrets, so every byte is searched and nothing is replaced: the cost a job
with secrets pays on all of its output. Each secret set is timed five times in CPU time (the
machine is shared: wall time swings with its load); the best run is printed, with the
number of forms searched.
Usage: python benchmarks/bench_redact.py [MIB]
"""

from __future__ import annotations

import base64
import json
import random
import sys
import time

from hodei_agent.redact import Redactor, forms_of

READ_SIZE = 64 * 1024


def output(size: int) -> bytes:
    """`size` bytes of deterministic, log-like output."""
    rng = random.Random(7)
    lines: list[bytes] = []
    total = 0
    while total < size:
        kind = rng.randrange(4)
        stamp = f"2026-01-{rng.randrange(1, 29):02d}T12:{rng.randrange(60):02d}:00Z"
        if kind == 0:
            line = f"{stamp} INFO worker {rng.randrange(10**6)} processed {rng.random():.6f}"
        elif kind == 1:
            line = json.dumps({"at": stamp, "user": f"u{rng.randrange(999)}",
                               "path": f"/api/v1/items/{rng.randrange(10**9)}?q=a%20b&x=1"})
        elif kind == 2:
            line = base64.b64encode(rng.randbytes(57)).decode()
        else:
            line = f"sha256={rng.randbytes(32).hex()} size={rng.randrange(10**7)}"
        lines.append(line.encode() + b"\n")
        total += len(lines[-1])
    return b"".join(lines)[:size]


def secret_sets() -> dict[str, dict[str, bytes]]:
    rng = random.Random(11)
    body = base64.b64encode(rng.randbytes(96)).decode()
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(
        body[i:i + 64] for i in range(0, len(body), 64)) + "\n-----END PRIVATE KEY-----\n"
    return {
        "one token": {"TOKEN": f"tok-{rng.randbytes(12).hex()}".encode()},
        "three (password, PEM, token\\n)": {
            "DB_PASSWORD": f"pw-{rng.randbytes(12).hex()}".encode(), "TLS_KEY": pem.encode(),
            "NL_SECRET": f"nl-{rng.randbytes(10).hex()}\n".encode()},
        "three with punctuation": {
            "A": "p/w+x=y é'\"<&>~*".encode(), "B": base64.b64encode(rng.randbytes(30)),
            "C": "s3cr3t: ü/ä {json} \\back\\ 100%".encode()},
        "32 of 64 bytes": {f"S{i}": base64.b64encode(rng.randbytes(48)) for i in range(32)},
    }


def best_rate(redactor: Redactor, data: bytes) -> float:
    best = float("inf")
    for _ in range(5):
        stream = redactor.stream()
        started = time.process_time()
        for at in range(0, len(data), READ_SIZE):
            stream.feed(data[at:at + READ_SIZE])
        stream.flush()
        best = min(best, time.process_time() - started)
    return len(data) / best / 2**20


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    data = output(mib * 2**20)
    for name, secrets in secret_sets().items():
        forms = sum(len(forms_of(value)) for value in secrets.values())
        rate = best_rate(Redactor(secrets), data)
        print(f"{name}: {forms} forms, {rate:,.0f} MiB/s "
              f"({READ_SIZE / 2**20 / rate * 1e6:,.0f} us per 64 KiB read)")


if __name__ == "__main__":
    main()
