"""A slixmpp controller (xep_0009) that drives a pmn provider: every service, errors, and events.

Usage: slix_controller.py --jid J --password P --server H:P --ca CA --target PROVIDER_FULL_JID
       [--expect-forbidden]   (a stranger: every call must be refused with <forbidden/>)
"""

import time

from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0009.binding import rpctime

from slix_common import *  # noqa: F403

args = parse_args([("--target", {"required": True}),
                   ("--expect-forbidden", {"action": "store_true"})])
xmpp = make_client(args)
events = asyncio.Queue()
checks = []


def on_message(msg):
    if msg["type"] == "headline" and str(msg["from"]) == args.target:
        ev = event_of(msg)
        if ev is not None:
            events.put_nowait(ev)


on_events(xmpp, on_message)


async def call(method, *params):
    """(result, fault) of one call; raises IqError for stanza errors."""
    iq = xmpp.plugin["xep_0009"].make_iq_method_call(args.target, method, py2xml(*params))
    resp = await iq.send(timeout=10)
    fault = resp["rpc_query"]["method_response"]["fault"]
    if fault is not None:
        return None, xml2fault(fault)
    values = xml2py(resp["rpc_query"]["method_response"]["params"])
    return (values[0] if values else None), None


async def ok(method, *params):
    result, fault = await call(method, *params)
    check(fault is None, f"{method}: unexpected fault {fault}")
    checks.append(method)
    return result


async def refused(condition, method, *params):
    try:
        await call(method, *params)
    except IqError as e:
        got = e.iq["error"]["condition"]
        check(got == condition, f"{method}: expected {condition}, got {got}")
        checks.append(f"{method}!{condition}")
        return
    fail(f"{method}: expected <{condition}/>, got an answer")


async def faulted(code, method, *params):
    result, fault = await call(method, *params)
    check(fault is not None and fault["code"] == code, f"{method}: expected fault {code}, got {result} {fault}")
    checks.append(f"{method}!{code}")


async def next_event(name):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            service, got, params = await asyncio.wait_for(events.get(), deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        if got == name:
            return service, params
    fail(f"no {name} event")


async def stranger():
    for method in ("player.status", "player.subscribe", "recorder.channels", "nosuch.method"):
        await refused("forbidden", method)


async def household():
    s = await ok("player.play", "file:///slix.mkv")
    check(s["state"] == "playing" and s["uri"] == "file:///slix.mkv", f"play: {s}")
    v = await ok("player.set_volume", 42)
    check(v == {"volume": 42, "muted": False}, f"set_volume: {v}")
    check((await ok("player.mute", True))["muted"] is True, "mute")
    q = await ok("player.enqueue", "file:///two.mkv", None)
    check(len(q["items"]) == 2 and q["current"] == 0, f"enqueue: {q}")
    q = await ok("player.enqueue", "file:///three.mkv", "Three")
    check(q["items"][2]["title"] == "Three", f"enqueue title: {q}")
    s = await ok("player.next")
    check(s["uri"] == "file:///two.mkv", f"next: {s}")
    s = await ok("player.seek", 5000)
    check(s["position"] >= 5000 and s["duration"] > 5000, f"seek: {s}")
    s = await ok("player.pause")
    check(s["state"] == "paused", f"pause: {s}")
    check(await ok("player.subscribe", ["state-changed"]) is True, "subscribe")
    await ok("player.resume")
    service, params = await next_event("state-changed")
    check(service == "player" and params[0]["state"] == "playing", f"event: {params}")
    check(await ok("player.unsubscribe") is True, "unsubscribe")
    await ok("player.stop")

    # Refusals, and the provider keeps serving after each.
    await refused("item-not-found", "player.explode")
    await refused("item-not-found", "nosuchservice.play")
    await refused("bad-request", "player.play", 42)
    await refused("bad-request", "player.play")
    await refused("bad-request", "player.set_volume", 101)
    await refused("bad-request", "player.subscribe", ["no-such-event"])
    await faulted(409, "player.pause")

    # Recorder: dateTime.iso8601 from Python's side.
    channels = await ok("recorder.channels")
    check(any(c["id"] == "one" for c in channels), f"channels: {channels}")
    now = int(time.time())
    fmt = lambda t: rpctime(time.strftime("%Y%m%dT%H:%M:%S", time.gmtime(t)))
    r = await ok("recorder.schedule", "one", fmt(now + 3600), fmt(now + 7200), "Slix show")
    check(r["state"] == "scheduled" and r["title"] == "Slix show", f"schedule: {r}")
    await faulted(409, "recorder.schedule", "two", fmt(now + 3700), fmt(now + 3800), "Clash")
    await faulted(422, "recorder.schedule", "two", fmt(now - 7200), fmt(now - 3600), "Past")
    await refused("bad-request", "recorder.schedule", "two", "tomorrow", fmt(now + 3800), "Str")
    check(len(await ok("recorder.scheduled")) == 1, "scheduled")
    check((await ok("recorder.cancel", r["id"]))["id"] == r["id"], "cancel")

    # Library paging.
    page = await ok("library.browse", "videos", 9998, 5)
    check(page["total"] == 10000 and len(page["items"]) == 2, f"browse: {page['total']}")
    hits = await ok("library.search", "Film 42", 0, 3)
    check(hits["total"] >= 1 and len(hits["items"]) <= 3, f"search: {hits}")
    item = await ok("library.item", "videos/7")
    check(item["title"] == "Film 7" and item["kind"] == "video", f"item: {item}")
    await faulted(404, "library.item", "videos/999999")


async def main():
    await xmpp.wait_until("session_start", timeout=15)
    xmpp.send_presence()
    if args.expect_forbidden:
        await stranger()
    else:
        await household()
    say("OK", json.dumps({"checks": len(checks)}))
    await xmpp.disconnect()


connect(xmpp, args)
try:
    xmpp.loop.run_until_complete(asyncio.wait_for(main(), 60))
except SystemExit:
    raise
except Exception as e:  # noqa: BLE001 - report anything as a failed check
    fail(f"{type(e).__name__}: {e}")
