package org.pmn

import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.SendChannel
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.flow

/*
 * The facets' streams as cold Flows, like RemoteControl's providers and events: collecting
 * starts watching, cancelling the collector (or `first()`, `take(n)`, the end of its scope)
 * closes the Rust handle. pmn's threads never wait for a slow collector: the buffer is unbounded,
 * and each stream is small (requests are rate-limited, failures and pairings are rare).
 */

/**
 * A cold flow that calls [watch] in the collector's own coroutine, before its first suspension,
 * and emits what the listener [watch] made sends into its channel; cancelling the collector closes
 * the handle [watch] returned.
 *
 * So a collector started with `launch(start = CoroutineStart.UNDISPATCHED)` is watching when
 * `launch` returns, and the event of a call made right after is in the flow. `callbackFlow` (with
 * `buffer`) could not promise that: it runs its block in a coroutine of its own, which on a busy
 * dispatcher starts after that call's event has already gone by (the cause of a failed CI run).
 * The channel is unbounded: `trySend` never fails while collected and pmn's thread never waits.
 */
internal inline fun <T> watchedFlow(crossinline watch: (SendChannel<T>) -> TaskHandle): Flow<T> = flow {
    val channel = Channel<T>(Channel.UNLIMITED)
    val handle = watch(channel)
    try {
        for (item in channel) emit(item)
    } finally {
        handle.close()
        channel.close()
    }
}

/**
 * Guests' requests to this owner device: the ones waiting for an answer first, then each new one.
 *
 * ```kotlin accessRequestsDoc(controller: Controller)
 * val owner = controller.owner()
 * val request = owner.accessRequests().first()
 * owner.approveAccess(request.id, listOf("playback"), validFor = 2.hours)
 * ```
 */
fun OwnerConsole.accessRequests(): Flow<AccessRequest> = watchedFlow { channel ->
    watchAccessRequests(object : AccessListener {
        override fun onAccessRequest(request: AccessRequest) {
            channel.trySend(request)
        }
    })
}

/** An end-to-end tunnel of this device that failed or was refused (see [Trust.tunnelFailures]). */
data class TunnelFailure(
    /** The other device's full JID. */
    val peer: String,
    /** `PmnException.Tls` for altered bytes or a failed handshake, `Forbidden` for an untrusted key. */
    val error: PmnException,
)

/** Every tunnel of this device that fails or is refused from now on. */
fun Trust.tunnelFailures(): Flow<TunnelFailure> = watchedFlow { channel ->
    watchTunnelFailures(object : TunnelFailureListener {
        override fun onTunnelFailure(peer: String, error: PmnException) {
            channel.trySend(TunnelFailure(peer, error))
        }
    })
}

/** How a pairing attempt with the code this provider shows ended (see [Trust.pairingOutcomes]). */
sealed interface PairingOutcome {
    /** The controller's full JID. */
    val peer: String

    /** [peer] typed the right code; [device] is now trusted. */
    data class Paired(override val peer: String, val device: TrustedDevice) : PairingOutcome

    /** [peer] tried and failed (wrong or expired code, pairing locked); nothing was pinned. */
    data class Failed(override val peer: String, val error: PmnException) : PairingOutcome
}

/**
 * Providers: the outcome of every pairing attempt from now on (close the screen showing the code
 * on [PairingOutcome.Paired]). Throws `PmnException.Config` on a controller.
 */
fun Trust.pairingOutcomes(): Flow<PairingOutcome> = watchedFlow { channel ->
    watchPairing(object : ProviderPairingListener {
        override fun onPaired(peer: String, device: TrustedDevice) {
            channel.trySend(PairingOutcome.Paired(peer, device))
        }

        override fun onPairingFailed(peer: String, error: PmnException) {
            channel.trySend(PairingOutcome.Failed(peer, error))
        }
    })
}

/** The network password at every change from now on (a rotation here or by another device): store it. */
fun Trust.networkPasswords(): Flow<String> = watchedFlow { channel ->
    watchNetworkPassword(object : NetworkPasswordListener {
        override fun onNetworkPasswordChanged(password: String) {
            channel.trySend(password)
        }
    })
}

/** A subscription restored after a gap in which events may have been lost (see [Controller.resyncs]). */
data class Resync(
    /** The provider's full JID. */
    val provider: String,
    /** The service whose subscription is live again, e.g. `player`. */
    val service: String,
)

/**
 * Every subscription of this controller restored after a gap from now on: the provider came back
 * online, or the controller's own session could not be resumed. Read the provider's state again
 * when one arrives. Throws `PmnException.NotConnected` before `connect()`.
 */
fun Controller.resyncs(): Flow<Resync> = watchedFlow { channel ->
    watchResyncs(object : ResyncListener {
        override fun onResync(provider: String, service: String) {
            channel.trySend(Resync(provider, service))
        }
    })
}

/** Events per crossing from Rust into [Controller.batchedEvents] at most, by default. */
const val DEFAULT_EVENT_BATCH: Int = 256

/**
 * Every event of this controller's subscriptions from now on, delivered from Rust in batches
 * (`watchEventBatches`: whatever arrived while the previous batch was handed over, at most
 * [maxBatch]) and flattened here, in order — for apps that receive many events, since one crossing
 * per batch costs far less than one per event (`cargo xtask bench kotlin`). While it is collected,
 * `ControllerListener.onEvent` is not called. Subscribe as usual (`subscribe`, `subscribeEvents`);
 * cancelling the collector closes the Rust handle. Throws `PmnException.NotConnected` before
 * `connect()`.
 */
fun Controller.batchedEvents(maxBatch: Int = DEFAULT_EVENT_BATCH): Flow<ServiceEvent> = watchedFlow { channel ->
    watchEventBatches(channel.batchSender(), maxBatch)
}

/** Flattens each batch into this channel; never blocks pmn's thread (the channel is unbounded). */
internal fun SendChannel<ServiceEvent>.batchSender(): EventBatchListener = object : EventBatchListener {
    override fun onEvents(events: List<ServiceEvent>) {
        for (event in events) trySend(event)
    }
}
