-- mod_pmn_tamper: a malicious server for pmn's in-path attack tests (issue 5, "attacks that must
-- fail"). Loaded only on the VirtualHost tamper.test (see prosody.cfg.lua.in). It alters iq and
-- message stanzas that one resource of an account sends to another resource of the same account
-- (two devices of one household network), chosen by the account's username (IBB data blocks are
-- altered whichever stanza carries them: pmn sends most of them in messages, some in iqs):
--
--   flip@tamper.test      flips one bit (the last byte) of every IBB data block from seq 1 on, in
--                         both directions: the TLS handshake's second flights and everything after.
--   lateflip@tamper.test  like flip, for every block (seq 0 included), but only once the account
--                         itself armed the attack with <iq type='set' to='tamper.test'><arm
--                         xmlns='urn:pmn:test:tamper'/></iq>: the test times the attack on an
--                         established tunnel. Disarm with <disarm xmlns='urn:pmn:test:tamper'/>.
--   swap@tamper.test      replaces the fingerprint in the XTLS security element of every Jingle
--                         session-initiate/accept by the server's own (a fixed SHA-256): the
--                         server substitutes its certificate for the device's.
--   any other user        untouched (clean@tamper.test is the control case).
--
-- Everything it changes is logged at level info ("pmn_tamper[<mode>]: ..."), so tests can prove the
-- attack really happened (DIR/prosody.log). Never load this anywhere but a test server.

local st = require "util.stanza";
local jid_bare = require "util.jid".bare;
local jid_split = require "util.jid".split;
local base64 = require "util.encodings".base64;
local sha256 = require "util.hashes".sha256;

local NS_IBB = "http://jabber.org/protocol/ibb";
local NS_JINGLE = "urn:xmpp:jingle:1";
local NS_XTLS = "urn:xmpp:jingle:security:xtls:1";
local NS_TAMPER = "urn:pmn:test:tamper";

-- The key the server pretends the peer has: 64 lower-case hex digits, never a real device key.
local SERVER_FINGERPRINT = sha256("pmn_tamper: the server's own key", true);

-- Usernames of tamper.test whose lateflip attack is armed.
local armed = {};

-- Replaces all text of `el` (an element with text only) by `text`.
local function set_text(el, text)
	for i = #el, 1, -1 do el[i] = nil; end
	el.tags = {};
	el:add_direct_child(text);
end

-- Flips the lowest bit of the last byte of `bytes`.
local function flip_last_byte(bytes)
	local b = bytes:byte(-1);
	local flipped = (b % 2 == 0) and (b + 1) or (b - 1);
	return bytes:sub(1, -2) .. string.char(flipped);
end

local function flip_block(mode, stanza, data, min_seq)
	local seq = tonumber(data.attr.seq);
	if not seq or seq < min_seq then return; end
	local bytes = base64.decode(data:get_text() or "");
	if not bytes or #bytes == 0 then return; end
	set_text(data, base64.encode(flip_last_byte(bytes)));
	module:log("info", "pmn_tamper[%s]: flipped a bit of IBB block seq=%d sid=%s (%d bytes) %s -> %s",
		mode, seq, tostring(data.attr.sid), #bytes, stanza.attr.from, stanza.attr.to);
end

-- The XTLS security elements of a Jingle payload: a direct child of <jingle> (where pmn puts it)
-- or inside a <content>.
local function security_elements(jingle)
	local found = {};
	for sec in jingle:childtags("security", NS_XTLS) do found[#found + 1] = sec; end
	for content in jingle:childtags("content", NS_JINGLE) do
		for sec in content:childtags("security", NS_XTLS) do found[#found + 1] = sec; end
	end
	return found;
end

local function swap_fingerprint(stanza, jingle)
	local action = jingle.attr.action;
	if action ~= "session-initiate" and action ~= "session-accept" then return; end
	for _, sec in ipairs(security_elements(jingle)) do
		for fp in sec:childtags("fingerprint", NS_XTLS) do
			local old = fp:get_text();
			set_text(fp, SERVER_FINGERPRINT);
			module:log("info", "pmn_tamper[swap]: %s fingerprint %s replaced by %s (sid %s) %s -> %s",
				action, tostring(old), SERVER_FINGERPRINT, tostring(jingle.attr.sid),
				stanza.attr.from, stanza.attr.to);
		end
	end
end

-- Whether `stanza` goes from one resource of this host's accounts to another of the same account.
local function between_own_devices(origin, stanza)
	if origin.type ~= "c2s" or origin.host ~= module.host then return false; end
	local from, to = stanza.attr.from, stanza.attr.to;
	return from and to and jid_bare(from) == jid_bare(to);
end

-- Flips a bit of an IBB data block, as the account's mode says.
local function tamper_data(origin, stanza, payload)
	local user = origin.username;
	if payload.name ~= "data" or payload.attr.xmlns ~= NS_IBB then return; end
	if user == "flip" then
		flip_block("flip", stanza, payload, 1);
	elseif user == "lateflip" and armed[user] then
		flip_block("lateflip", stanza, payload, 0);
	end
end

module:hook("pre-iq/full", function(event)
	local origin, stanza = event.origin, event.stanza;
	if stanza.attr.type ~= "set" or not between_own_devices(origin, stanza) then return; end
	local payload = stanza.tags[1];
	if not payload then return; end
	local user = origin.username;
	if user == "flip" or user == "lateflip" then
		tamper_data(origin, stanza, payload);
	elseif user == "swap" then
		if payload.name == "jingle" and payload.attr.xmlns == NS_JINGLE then
			swap_fingerprint(stanza, payload);
		end
	end
	-- Never stop the stanza: it goes on, altered, like a real man in the middle would send it.
end, 1000);

module:hook("pre-message/full", function(event)
	local origin, stanza = event.origin, event.stanza;
	if not between_own_devices(origin, stanza) then return; end
	for payload in stanza:childtags("data", NS_IBB) do
		tamper_data(origin, stanza, payload);
	end
end, 1000);

-- The test's control channel for lateflip: only the account itself can (dis)arm its attack.
local function arm_handler(on)
	return function(event)
		local origin, stanza = event.origin, event.stanza;
		local user, host = jid_split(stanza.attr.from);
		if origin.type ~= "c2s" or host ~= module.host or user ~= "lateflip" then
			origin.send(st.error_reply(stanza, "auth", "forbidden", "only lateflip@tamper.test"));
			return true;
		end
		armed[user] = on or nil;
		module:log("info", "pmn_tamper[lateflip]: %s by %s", on and "armed" or "disarmed", stanza.attr.from);
		origin.send(st.reply(stanza));
		return true;
	end
end
module:hook("iq-set/host/" .. NS_TAMPER .. ":arm", arm_handler(true));
module:hook("iq-set/host/" .. NS_TAMPER .. ":disarm", arm_handler(false));

module:log("info", "pmn_tamper loaded: this host is a malicious server (tests only)");
