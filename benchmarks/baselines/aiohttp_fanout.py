"""The fan-out a user would write in Python instead of using revdesk.

One aiohttp ClientSession with a keep-alive connector limited to --concurrency connections, that
many asyncio workers, and every delivery signed with Standard Webhooks headers (HMAC-SHA256 over
`id.timestamp.body`). Prints one JSON line per batch in the format of revdesk-bench-fanout, so
run.py treats both alike.

    python3 aiohttp_fanout.py --scheme http|https --http-port P --https-port P --ca-file PEM
        --payload FILE --subscriptions N --endpoints E --concurrency C
        --warmup-deliveries W --min-deliveries M --target-seconds T --runs R

Receivers are named rJ.bench.test; the resolver maps every such name to 127.0.0.1 and rejects
any other name, so no request can leave the machine.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import math
import os
import resource
import secrets
import socket
import ssl
import time

import aiohttp
from aiohttp.abc import AbstractResolver


class LoopbackResolver(AbstractResolver):
    """Resolves every name under .bench.test to 127.0.0.1 and nothing else."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if not host.endswith(".bench.test"):
            raise OSError(f"refusing to resolve {host}")
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self):
        pass


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def new_message_id():
    return "msg_" + base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", choices=["http", "https"], default="http")
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--https-port", type=int, default=0)
    parser.add_argument("--ca-file")
    parser.add_argument("--payload", required=True)
    parser.add_argument("--subscriptions", type=int, default=64)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup-deliveries", type=int, default=2000)
    parser.add_argument("--min-deliveries", type=int, default=2000)
    parser.add_argument("--target-seconds", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with open(args.payload, "rb") as f:
        payload = f.read()
    first_port = args.https_port if args.scheme == "https" else args.http_port
    subscriptions = []
    for i in range(args.subscriptions):
        endpoint = i % args.endpoints
        url = f"{args.scheme}://r{endpoint}.bench.test:{first_port + endpoint}/hooks/{i}"
        subscriptions.append((url, os.urandom(32)))

    tls = None
    if args.scheme == "https":
        tls = ssl.create_default_context(cafile=args.ca_file)
    connector = aiohttp.TCPConnector(
        limit=args.concurrency, limit_per_host=0, ssl=tls, resolver=LoopbackResolver()
    )
    delivered_total = 0

    async with aiohttp.ClientSession(connector=connector) as session:

        async def deliver(url, key):
            message_id = new_message_id()
            timestamp = str(int(time.time()))
            signed = message_id.encode() + b"." + timestamp.encode() + b"." + payload
            signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "aiohttp-fanout-baseline",
                "RevDesk-Event-Type": "call_completed",
                "webhook-id": message_id,
                "webhook-timestamp": timestamp,
                "webhook-signature": "v1," + signature.decode(),
            }
            try:
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
                    return 200 <= response.status < 300
            except (aiohttp.ClientError, OSError):
                return False

        async def run_batch(total, warmup):
            nonlocal delivered_total
            next_index = 0
            delivered = 0
            failed = 0

            async def worker():
                nonlocal next_index, delivered, failed
                while next_index < total:
                    index = next_index
                    next_index += 1
                    if await deliver(*subscriptions[index % len(subscriptions)]):
                        delivered += 1
                    else:
                        failed += 1

            cpu_before = cpu_seconds()
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            seconds = time.perf_counter() - started
            cpu = cpu_seconds() - cpu_before
            delivered_total += delivered
            return {
                "scheme": args.scheme,
                "store": "none",
                "subscriptions": args.subscriptions,
                "endpoints": args.endpoints,
                "concurrency": args.concurrency,
                "body_bytes": len(payload),
                "kind": "fanout",
                "warmup": warmup,
                "deliveries": delivered,
                "failed": failed,
                "seconds": seconds,
                "deliveries_per_second": delivered / seconds,
                "cpu_seconds": cpu,
                "cpu_seconds_per_1000": cpu * 1000 / delivered if delivered else 0,
            }

        def round_up(deliveries):
            events = max(1, math.ceil(deliveries / args.subscriptions))
            return events * args.subscriptions

        warm = await run_batch(round_up(args.warmup_deliveries), True)
        print(json.dumps(warm), flush=True)
        total = round_up(max(args.min_deliveries, warm["deliveries_per_second"] * args.target_seconds))
        for _ in range(args.runs):
            print(json.dumps(await run_batch(total, False)), flush=True)
    print(json.dumps({"kind": "total", "deliveries": delivered_total}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
