package org.pmn

import kotlin.time.Duration
import kotlin.time.Duration.Companion.milliseconds

/*
 * kotlin.time for the calls that take a time: the generated API counts in Long milliseconds and
 * epoch seconds (the FFI is signed only, src/ffi/numbers.rs); these overloads let an app say
 * `validFor = 2.hours` instead of computing epoch seconds itself, which is where the README's
 * first snippet went wrong.
 */

/** Epoch seconds [validFor] from now, by this device's clock. */
private fun secondsFromNow(validFor: Duration): Long =
    System.currentTimeMillis() / 1000 + validFor.inWholeSeconds

/**
 * [OwnerConsole.approveAccess] for a time from now: the grant expires [validFor] after this call
 * (at most 90 days, the core's limit; longer is `PmnException.Config`).
 */
suspend fun OwnerConsole.approveAccess(requestId: Long, scopes: List<String>, validFor: Duration): Approval =
    approveAccess(requestId, scopes, secondsFromNow(validFor))

/** [OwnerConsole.grantItemAccess] for a time from now: the grant expires [validFor] after this call. */
suspend fun OwnerConsole.grantItemAccess(
    guestNetwork: String,
    deviceFingerprint: String,
    item: String,
    validFor: Duration,
): Approval = grantItemAccess(guestNetwork, deviceFingerprint, item, secondsFromNow(validFor))

/** [GuestPass.requestAccess], waiting at most [timeout] for the owner's answer. */
suspend fun GuestPass.requestAccess(
    network: String,
    scopes: List<String>,
    reason: String?,
    timeout: Duration,
): GuestAccess = requestAccess(network, scopes, reason, timeout.inWholeMilliseconds)

/** [Player.seek] to [position]. */
suspend fun Player.seek(position: Duration): PlayerStatus = seek(position.inWholeMilliseconds)

/** Where the player is. */
val PlayerStatus.position: Duration get() = positionMs.milliseconds

/** The media's length, when known. */
val PlayerStatus.length: Duration? get() = durationMs?.milliseconds
