package org.pmn

import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CopyOnWriteArraySet
import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicLong
import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableSharedFlow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.SharedFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asSharedFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.emitAll
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.receiveAsFlow

/**
 * The idiomatic Kotlin face of a pmn [Controller]: state as [StateFlow]s, events as subscriptions
 * the provider has acknowledged ([subscription]) or cold [Flow]s whose collection *is* the
 * subscription ([events]), and every suspend call of the generated controller (`player`, `trust`,
 * `owner`, …) by delegation — a method added to the Rust API appears here without a change to
 * this class.
 *
 * ```kotlin remoteControlDoc(config: ConnectionConfig, show: (ServiceEvent) -> Unit)
 * RemoteControl(config).use { remote ->
 *     remote.connect()
 *     val tv = remote.providersOffering(RemoteControl.PLAYER_FEATURE).first { it.isNotEmpty() }.first()
 *     val events = remote.subscription(tv.jid, "player")    // returns once the TV acknowledged
 *     val job = launch { events.collect { show(it) } }
 *     remote.player(tv.jid).play("file:///movies/a.mkv") // its state change is in `events`
 *     events.close()                                      // unsubscribes; the collector ends
 *     job.join()
 * }
 * ```
 *
 * Pure JVM (no `android.*`): the same class runs in Android apps and in desktop tests. Thread-safe;
 * pmn calls the underlying listener from its own threads and this class never blocks them.
 */
class RemoteControl private constructor(
    private val bridge: FlowBridge,
    /** The generated controller underneath, for anything this class does not wrap. */
    val controller: Controller,
) : ControllerInterface by controller, AutoCloseable {

    /** A controller for [config]; nothing happens on the network until [connect]. Throws `PmnException.Config`. */
    constructor(config: ConnectionConfig, eventBuffer: Int = DEFAULT_EVENT_BUFFER) :
        this(FlowBridge(eventBuffer), config)

    private constructor(bridge: FlowBridge, config: ConnectionConfig) :
        this(bridge, Controller(config, bridge))

    /** The providers online now, updated as they come and go (current list first). */
    val onlineProviders: StateFlow<List<ProviderInfo>> = bridge.providers.asStateFlow()

    /** The connection state, updated as it changes. */
    val connection: StateFlow<ConnectionState> = bridge.connection.asStateFlow()

    /**
     * Every event of every active subscription, hot. Prefer [events], which also subscribes. When a
     * collector falls more than `eventBuffer` events behind, new events are dropped (counted in
     * [droppedEvents]): pmn's threads never wait for the app.
     */
    val allEvents: SharedFlow<ServiceEvent> = bridge.events.asSharedFlow()

    /** Events lost because a collector of [allEvents] / [events] fell behind. */
    val droppedEvents: Long get() = bridge.dropped.get()

    private val subscriptions = ConcurrentHashMap.newKeySet<EventSubscription>()

    /** Buffered per [subscription]d subscription before new events are dropped (and counted). */
    private val eventBuffer = bridge.eventBuffer

    /** The online providers that offer [feature] (e.g. [PLAYER_FEATURE]). */
    fun providersOffering(feature: String): Flow<List<ProviderInfo>> =
        onlineProviders.map { list -> list.filter { feature in it.services } }.distinctUntilChanged()

    /**
     * Subscribes to the events of [service] (e.g. `"player"`) on [provider] and returns once the
     * provider has acknowledged, so the event of a call made after it returns — the `play()` right
     * after — is in the subscription, never lost. (The generated `subscribe`, here by delegation
     * too, returns a bare handle whose events go to [allEvents].) The [EventSubscription] is a
     * [Flow] of the matching events from the moment of the request on, buffered (`eventBuffer` of
     * this remote; beyond it new events are dropped and counted in [droppedEvents]) until
     * collected; [EventSubscription.close] (or closing this remote) unsubscribes and completes it.
     * Throws what `Controller.subscribe` throws (`PmnException.ProviderUnavailable`, `Forbidden`, …).
     *
     * Events are matched by provider (and by service for [ServiceEvent.Other]); a typed event of
     * another service of the same provider, subscribed elsewhere at the same time, shows in both —
     * narrow with `filterIsInstance<ServiceEvent.PlayerStateChanged>()` and the like.
     */
    suspend fun subscription(provider: String, service: String): EventSubscription {
        // The sink listens before the provider is asked, so nothing between its answer and this
        // function's return can slip past.
        val sink = EventSink(provider, service, eventBuffer, bridge.dropped)
        bridge.sinks.add(sink)
        val handle = try {
            controller.subscribe(provider, service)
        } catch (e: Throwable) {
            bridge.sinks.remove(sink)
            throw e
        }
        val subscription = EventSubscription(provider, service, sink.channel, handle) {
            bridge.sinks.remove(sink)
            subscriptions.remove(it)
        }
        subscriptions.add(subscription)
        // Closed while the provider was answering: this one must not outlive the remote.
        if (bridge.closed.value) subscription.close()
        return subscription
    }

    /**
     * The events of [service] (e.g. `"player"`) on [provider], subscribed while collected: the
     * flow [subscription]s when collection starts and emits nothing before the provider has
     * acknowledged; cancelling the collector (or `take(n)`, `first()`, the end of its scope)
     * unsubscribes. It completes when this remote is closed. To make a call only once the
     * subscription stands, use [subscription] (a collector launched just before a call may not have
     * subscribed yet).
     */
    fun events(provider: String, service: String): Flow<ServiceEvent> = flow {
        subscription(provider, service).use { emitAll(it) }
    }

    /**
     * Owner devices: the audit log of [provider] as a flow — the records after sequence number
     * [after] first, then each new one as the provider reports it (who asked, was granted, used
     * or was refused what). While collected it holds a subscription to the provider's `access`
     * events, whose arrival is the cue to read the records after the last one emitted, so none is
     * missed or emitted twice. A record the provider folds into an earlier one (a repeated call)
     * keeps that record's number and is not emitted again. Throws what `accessAudit` and
     * [subscription] throw (`PmnException.Forbidden` on a device that is not an owner).
     */
    fun auditRecords(provider: String, after: Long = 0L): Flow<AuditRecord> = flow {
        val owner = controller.owner()
        // Subscribed before the first read: a record written between the two is still seen.
        subscription(provider, "access").use { notices ->
            var last = after
            suspend fun readNew() {
                for (record in owner.accessAudit(provider, last)) {
                    if (record.seq > last) {
                        emit(record)
                        last = record.seq
                    }
                }
            }
            readNew()
            notices.collect { readNew() }
        }
    }

    /** Closes every subscription and the controller (Rust side freed). Idempotent. */
    override fun close() {
        bridge.closed.value = true
        subscriptions.toList().forEach { it.close() }
        controller.close()
    }

    companion object {
        /** Events buffered per collector before the oldest are dropped. */
        const val DEFAULT_EVENT_BUFFER: Int = 256

        /** The media player feature (spec §6). */
        const val PLAYER_FEATURE: String = "urn.xmpp.tmp.media.player"
    }
}

/**
 * A subscription the provider has acknowledged ([RemoteControl.subscription]): a [Flow] of its
 * events from then on, each delivered to one collector (collect it once, or one collector after
 * another), completing when [close]d.
 */
class EventSubscription internal constructor(
    /** The provider's full JID. */
    val provider: String,
    /** The service, e.g. `"player"`. */
    val service: String,
    private val channel: Channel<ServiceEvent>,
    private val handle: TaskHandle,
    private val onClose: (EventSubscription) -> Unit,
) : Flow<ServiceEvent> by channel.receiveAsFlow(), AutoCloseable {
    private val closed = AtomicBoolean(false)

    /** Unsubscribes on the provider and completes the flow once the buffered events are taken. Idempotent. */
    override fun close() {
        if (!closed.compareAndSet(false, true)) return
        onClose(this)
        handle.close()
        channel.close()
    }
}

/** Where [FlowBridge] puts the events of one [EventSubscription]; never blocks pmn's threads. */
internal class EventSink(
    private val provider: String,
    private val service: String,
    buffer: Int,
    private val dropped: AtomicLong,
) {
    val channel = Channel<ServiceEvent>(buffer)

    fun offer(event: ServiceEvent) {
        if (event.providerJid == provider && (event !is ServiceEvent.Other || event.service == service)) {
            // Full (the app does not collect): this event is lost, and counted.
            if (channel.trySend(event).isFailure && !channel.isClosedForSend) dropped.incrementAndGet()
        }
    }
}

/** The provider that sent this event; every variant carries one. */
val ServiceEvent.providerJid: String
    get() = when (this) {
        is ServiceEvent.Other -> provider
        else -> ProviderAccessor.get(javaClass).invoke(this) as String
    }

/**
 * Reads `provider` from any [ServiceEvent] variant, including ones added to the Rust API after this
 * file was written (the generated data classes all have `getProvider()`; the consumer ProGuard rules
 * keep `org.pmn.**`).
 */
private object ProviderAccessor : ClassValue<java.lang.reflect.Method>() {
    override fun computeValue(type: Class<*>): java.lang.reflect.Method = type.getMethod("getProvider")
}

/** The listener behind [RemoteControl]: turns callbacks into flows without ever blocking pmn. */
internal class FlowBridge(val eventBuffer: Int) : ControllerListener {
    private val known = LinkedHashMap<String, ProviderInfo>()
    val providers = MutableStateFlow<List<ProviderInfo>>(emptyList())
    val connection = MutableStateFlow<ConnectionState>(ConnectionState.Idle)
    val events = MutableSharedFlow<ServiceEvent>(
        extraBufferCapacity = eventBuffer,
        onBufferOverflow = BufferOverflow.SUSPEND,
    )
    val dropped = AtomicLong()
    val closed = MutableStateFlow(false)

    /** The [RemoteControl.subscription]d subscriptions' buffers. */
    val sinks = CopyOnWriteArraySet<EventSink>()

    override fun onProviderOnline(provider: ProviderInfo) = synchronized(known) {
        known[provider.jid] = provider
        providers.value = known.values.toList()
    }

    override fun onProviderOffline(jid: String) = synchronized(known) {
        known.remove(jid)
        providers.value = known.values.toList()
    }

    override fun onEvent(event: ServiceEvent) {
        // tryEmit never suspends: false means a collector's buffer is full, and this event is lost.
        if (!events.tryEmit(event)) dropped.incrementAndGet()
        sinks.forEach { it.offer(event) }
    }

    override fun onConnectionState(state: ConnectionState) {
        connection.value = state
    }
}
