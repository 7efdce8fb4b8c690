"""Packet loss and delay for pmn's field harness (tests/field/net.rs): this kernel has no
sch_netem, so an iptables NFQUEUE rule hands every forwarded packet to this process, which drops
each with probability --loss and holds each packet it keeps for --delay-ms before accepting it
(a verdict given after the callback: NetfilterQueue >= 1.0). The delay is the same for every
packet, so the release order is the arrival order (no reordering). Prints READY once bound, and
"seen N dropped M delayed D" when stopped (SIGTERM)."""

import argparse
import collections
import random
import select
import signal
import sys
import time

from netfilterqueue import NetfilterQueue


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--loss", type=float, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    delay = args.delay_ms / 1000.0
    counts = {"seen": 0, "dropped": 0, "delayed": 0}
    held = collections.deque()  # (due, packet), due in arrival order

    def handle(packet):
        counts["seen"] += 1
        if random.random() < args.loss:
            counts["dropped"] += 1
            packet.drop()
        elif delay > 0:
            counts["delayed"] += 1
            held.append((time.monotonic() + delay, packet))
        else:
            packet.accept()

    def stop(*_):
        # Let the held packets go (the rule has --queue-bypass once we are gone).
        while held:
            held.popleft()[1].accept()
        print(
            f"seen {counts['seen']} dropped {counts['dropped']} delayed {counts['delayed']}",
            flush=True,
        )
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    nfq = NetfilterQueue()
    # Room for what 50 ms of the field's traffic holds, with a wide margin.
    nfq.bind(args.queue, handle, max_len=8192)
    print("READY", flush=True)
    fd = nfq.get_fd()
    try:
        if delay <= 0:
            nfq.run()
            return
        while True:
            now = time.monotonic()
            while held and held[0][0] <= now:
                held.popleft()[1].accept()
            timeout = max(0.0, held[0][0] - now) if held else 1.0
            readable, _, _ = select.select([fd], [], [], timeout)
            if readable:
                nfq.run(block=False)
    finally:
        nfq.unbind()


if __name__ == "__main__":
    main()
