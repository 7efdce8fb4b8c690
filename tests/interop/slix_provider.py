"""A slixmpp provider of the media player (xep_0009 + caps), driven by a pmn controller.

It announces `urn.xmpp.tmp.media.player` with identity automation/service through XEP-0115 caps,
answers player.* in pmn's wire shapes, sends pmn events to subscribers, and refuses what pmn refuses.
Usage: slix_provider.py --jid J --password P --server H:P --ca CA ; prints READY <jid>, runs until
stdin closes.
"""

import sys

from slixmpp.plugins.xep_0009.binding import _py2xml
from slixmpp.xmlstream import ET

from slix_common import *  # noqa: F403

args = parse_args()
xmpp = make_client(args)
state = {"uri": None, "state": "stopped", "position": 0, "volume": 50, "muted": False}
subscribers = set()


def status():
    s = {"state": state["state"], "position": state["position"], "volume": state["volume"],
         "muted": state["muted"]}
    if state["uri"]:
        s["uri"] = state["uri"]
    return s


def emit(name, payload):
    for to in list(subscribers):
        msg = xmpp.make_message(mto=to, mtype="headline")
        msg.append(event_element("player", name, [payload]))
        msg.send()


def changed():
    emit("state-changed", status())


def on_call(iq):
    rpc = xmpp.plugin["xep_0009"]
    method = iq["rpc_query"]["method_call"]["method_name"]
    params = xml2py(iq["rpc_query"]["method_call"]["params"])
    caller = iq["from"]

    def answer(value):
        rpc.make_iq_method_response(iq["id"], caller, py2xml(value)).send()

    def fault(code, text):
        # Not slixmpp's fault2xml: it writes <fault xmlns="" xmlns="jabber:iq:rpc">, a duplicate
        # attribute that makes the stanza malformed (the server drops the stream). Same shape, built
        # with a proper namespace.
        el = ET.Element("{%s}fault" % RPC_NS)
        el.append(_py2xml({"faultCode": code, "faultString": text}))
        resp = iq.reply()
        resp.enable("rpc_query")
        resp["rpc_query"]["method_response"]["fault"] = el
        resp.send()

    def refuse(condition):
        err = iq.reply()
        err["error"]["type"] = "modify" if condition == "bad-request" else "cancel"
        err["error"]["condition"] = condition
        err.send()

    if caller.bare != xmpp.boundjid.bare:
        return refuse("forbidden")
    if method == "player.play":
        if len(params) != 1 or not isinstance(params[0], str):
            return refuse("bad-request")
        state.update(uri=params[0], state="playing", position=0)
        changed()
        return answer(status())
    if method in ("player.pause", "player.resume"):
        if params:
            return refuse("bad-request")
        if state["state"] == "stopped":
            return fault(409, "nothing is loaded")
        new = "paused" if method == "player.pause" else "playing"
        if new != state["state"]:
            state["state"] = new
            changed()
        return answer(status())
    if method == "player.stop":
        state.update(uri=None, state="stopped", position=0)
        changed()
        return answer(status())
    if method == "player.status":
        return answer(status())
    if method == "player.set_volume":
        if len(params) != 1 or type(params[0]) is not int or not 0 <= params[0] <= 100:
            return refuse("bad-request")
        state["volume"] = params[0]
        emit("volume-changed", {"volume": state["volume"], "muted": state["muted"]})
        return answer({"volume": state["volume"], "muted": state["muted"]})
    if method == "player.subscribe":
        subscribers.add(caller)
        return answer(True)
    if method == "player.unsubscribe":
        had = caller in subscribers
        subscribers.discard(caller)
        return answer(had)
    return refuse("item-not-found")


def on_presence(pres):
    if pres["type"] == "unavailable":
        subscribers.discard(pres["from"])


xmpp.add_event_handler("jabber_rpc_method_call", on_call)
xmpp.add_event_handler("presence_unavailable", on_presence)
xmpp.plugin["xep_0030"].add_identity(category="automation", itype="service", name="Slix TV")
xmpp.plugin["xep_0030"].add_feature("urn.xmpp.tmp.media.player")


async def main():
    await xmpp.wait_until("session_start", timeout=15)
    await xmpp.plugin["xep_0115"].update_caps()
    xmpp.send_presence()
    say("READY", xmpp.boundjid.full)
    # Run until the test closes our stdin.
    await xmpp.loop.run_in_executor(None, sys.stdin.read)
    await xmpp.disconnect()


connect(xmpp, args)
try:
    xmpp.loop.run_until_complete(main())
except Exception as e:  # noqa: BLE001
    fail(f"{type(e).__name__}: {e}")
