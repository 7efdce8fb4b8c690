"""Packet loss for pmn's field harness (tests/field/net.rs): this kernel has no sch_netem, so
an iptables NFQUEUE rule hands every forwarded packet to this process, which drops each with
probability --loss and accepts the rest. Prints READY once bound, and "seen N dropped M" when
stopped (SIGTERM)."""

import argparse
import random
import signal
import sys

from netfilterqueue import NetfilterQueue


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--loss", type=float, required=True)
    args = parser.parse_args()
    counts = {"seen": 0, "dropped": 0}

    def handle(packet):
        counts["seen"] += 1
        if random.random() < args.loss:
            counts["dropped"] += 1
            packet.drop()
        else:
            packet.accept()

    def stop(*_):
        print(f"seen {counts['seen']} dropped {counts['dropped']}", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    nfq = NetfilterQueue()
    nfq.bind(args.queue, handle)
    print("READY", flush=True)
    try:
        nfq.run()
    finally:
        nfq.unbind()


if __name__ == "__main__":
    main()
