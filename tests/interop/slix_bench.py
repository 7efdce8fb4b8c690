"""Times sequential Jabber-RPC calls from slixmpp (xep_0009) to a provider: benches/rpc_slixmpp.rs.

Usage: slix_bench.py --jid J --password P --server H:P --ca CA --target JID --calls N --warmup W
Prints `OK {"median_us": …, "p99_us": …}`.
"""

import time

from slix_common import *  # noqa: F403

args = parse_args([("--target", {"required": True}),
                   ("--calls", {"type": int, "default": 1000}),
                   ("--warmup", {"type": int, "default": 100})])
xmpp = make_client(args)


async def one():
    iq = xmpp.plugin["xep_0009"].make_iq_method_call(args.target, "player.status", py2xml())
    t = time.perf_counter()
    resp = await iq.send(timeout=10)
    elapsed = time.perf_counter() - t
    xml2py(resp["rpc_query"]["method_response"]["params"])
    return elapsed


async def main():
    await xmpp.wait_until("session_start", timeout=15)
    xmpp.send_presence()
    for _ in range(args.warmup):
        await one()
    times = sorted([await one() for _ in range(args.calls)])
    median = times[len(times) // 2] * 1e6
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6
    say("OK", json.dumps({"median_us": median, "p99_us": p99}))
    await xmpp.disconnect()


connect(xmpp, args)
xmpp.loop.run_until_complete(asyncio.wait_for(main(), 300))
