package org.pmn

import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicLong
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.channels.BufferOverflow
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableSharedFlow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.SharedFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asSharedFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.channelFlow
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.launch

/**
 * The idiomatic Kotlin face of a pmn [Controller]: state as [StateFlow]s, events as cold [Flow]s
 * whose collection *is* the subscription, and every suspend call of the generated controller
 * (`player`, `trust`, `owner`, …) by delegation — a method added to the Rust API appears here
 * without a change to this class.
 *
 * ```kotlin
 * RemoteControl(config).use { remote ->
 *     remote.connect()
 *     val tv = remote.providersOffering(PLAYER_FEATURE).first { it.isNotEmpty() }.first()
 *     val job = scope.launch { remote.events(tv.jid, "player").collect { show(it) } } // subscribes
 *     remote.player(tv.jid).play("file:///movies/a.mkv")
 *     job.cancel()                                                               // unsubscribes
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

    private val subscriptions = ConcurrentHashMap.newKeySet<TaskHandle>()

    /** The online providers that offer [feature] (e.g. [PLAYER_FEATURE]). */
    fun providersOffering(feature: String): Flow<List<ProviderInfo>> =
        onlineProviders.map { list -> list.filter { feature in it.services } }.distinctUntilChanged()

    /**
     * The events of [service] (e.g. `"player"`) on [provider], subscribed while collected:
     * collecting calls `subscribe` on the provider; cancelling the collector (or `take(n)`, `first()`,
     * the end of its scope) closes the Rust subscription, which unsubscribes. The flow completes when
     * this remote is closed.
     *
     * Events are matched by provider (and by service for [ServiceEvent.Other]); a typed event of
     * another service of the same provider, subscribed elsewhere at the same time, shows in both
     * flows — narrow with `filterIsInstance<ServiceEvent.PlayerStateChanged>()` and the like.
     */
    fun events(provider: String, service: String): Flow<ServiceEvent> = channelFlow {
        // Listen before subscribing, so the first event cannot slip between the two.
        launch(start = CoroutineStart.UNDISPATCHED) {
            bridge.events.collect { event ->
                if (event.providerJid == provider &&
                    (event !is ServiceEvent.Other || event.service == service)
                ) {
                    send(event)
                }
            }
        }
        val handle = controller.subscribe(provider, service)
        subscriptions.add(handle)
        try {
            bridge.closed.first { it }
        } finally {
            subscriptions.remove(handle)
            handle.close()
        }
        channel.close()
    }

    /** Closes every subscription and the controller (Rust side freed). Idempotent. */
    override fun close() {
        bridge.closed.value = true
        subscriptions.toList().forEach { it.close() }
        subscriptions.clear()
        controller.close()
    }

    companion object {
        /** Events buffered per collector before the oldest are dropped. */
        const val DEFAULT_EVENT_BUFFER: Int = 256

        /** The media player feature (spec §6). */
        const val PLAYER_FEATURE: String = "urn.xmpp.tmp.media.player"
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
internal class FlowBridge(eventBuffer: Int) : ControllerListener {
    private val known = LinkedHashMap<String, ProviderInfo>()
    val providers = MutableStateFlow<List<ProviderInfo>>(emptyList())
    val connection = MutableStateFlow<ConnectionState>(ConnectionState.Idle)
    val events = MutableSharedFlow<ServiceEvent>(
        extraBufferCapacity = eventBuffer,
        onBufferOverflow = BufferOverflow.SUSPEND,
    )
    val dropped = AtomicLong()
    val closed = MutableStateFlow(false)

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
    }

    override fun onConnectionState(state: ConnectionState) {
        connection.value = state
    }
}
