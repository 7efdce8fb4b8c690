"""Shared plumbing of the slixmpp interop peers (tests/interop_slixmpp.rs starts them).

Both peers log in with plain XMPP (no pmn end-to-end tunnel: slixmpp has none, and the interop tests
configure plain transport explicitly), trust the test CA, and report through stdout lines:
`READY <full jid>` once online, `OK <json>` at the end, `FAIL <reason>` on a failed check.
"""

import argparse
import asyncio
import json
import sys

from slixmpp import ClientXMPP
from slixmpp.plugins.xep_0009.binding import py2xml, xml2py, xml2fault

EVENT_NS = "urn:xmpp:tmp:pmn:event:0"
RPC_NS = "jabber:iq:rpc"


def parse_args(extra=None):
    p = argparse.ArgumentParser()
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--server", required=True, help="host:port")
    p.add_argument("--ca", required=True)
    for name, kw in (extra or []):
        p.add_argument(name, **kw)
    return p.parse_args()


def make_client(args):
    xmpp = ClientXMPP(args.jid, args.password)
    xmpp.ca_certs = args.ca
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0009")
    xmpp.register_plugin("xep_0115")
    return xmpp


def connect(xmpp, args):
    host, port = args.server.rsplit(":", 1)
    xmpp.connect(host=host, port=int(port))


def say(*parts):
    print(*parts, flush=True)


def fail(reason):
    say("FAIL", reason)
    sys.exit(1)


def check(cond, what):
    if not cond:
        fail(what)


def event_of(msg):
    """(service, name, params) of a pmn event message, or None."""
    el = msg.xml.find("{%s}event" % EVENT_NS)
    if el is None:
        return None
    params = el.find("{%s}params" % RPC_NS)
    values = xml2py(params) if params is not None else []
    return el.get("service"), el.get("name"), values


def on_events(xmpp, handler):
    """Calls handler(msg) for every message carrying a pmn <event/>. slixmpp's own 'message' event
    only fires for messages with a <body/>, which events do not have."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    xmpp.register_handler(Callback(
        "pmn event", MatchXPath("{jabber:client}message/{%s}event" % EVENT_NS), handler))


def event_element(service, name, params):
    from slixmpp.xmlstream import ET
    el = ET.Element("{%s}event" % EVENT_NS, {"service": service, "name": name})
    el.append(py2xml(*params))
    return el


__all__ = [
    "asyncio", "json", "py2xml", "xml2py", "xml2fault", "parse_args", "make_client", "connect",
    "say", "fail", "check", "event_of", "event_element", "RPC_NS", "EVENT_NS", "on_events",
]
