// The idiomatic Swift face of a pmn `Controller`: providers, connection state and events as
// AsyncStreams, `async throws` calls. Every call of the generated controller (play, pause, browse, …)
// is on `remote.controller`, so a method added to the Rust API needs no change here.
//
//     let remote = try RemoteControl(config: config)
//     try await remote.connect()
//     for await players in remote.providers(offering: RemoteControl.playerFeature) { … }
//     for try await event in remote.events(provider: tv.jid, service: "player") { … } // subscribed while iterated
//     let sub = try await remote.subscription(provider: tv.jid, service: "player") // acknowledged
//     _ = try await remote.controller.player(provider: tv.jid).play(uri: "file:///movies/a.mkv")
//     for await event in sub.events { … }                                      // the play's event is there
//     _ = try await remote.controller.player(provider: tv.jid).play(uri: "file:///movies/a.mkv")
//     remote.close()

import Foundation

/// A remote control for the household's media devices.
public final class RemoteControl: Sendable {
    /// The media player feature (spec §6).
    public static let playerFeature = "urn.xmpp.tmp.media.player"

    /// The generated controller underneath: every `async throws` call lives there.
    public let controller: Controller
    private let bridge: StreamBridge

    /// A controller for `config`; nothing happens on the network until `connect()`.
    /// Throws `PmnError.Config` for an invalid configuration.
    public init(config: ConnectionConfig) throws {
        let bridge = StreamBridge()
        self.bridge = bridge
        self.controller = try Controller(config: config, listener: bridge)
    }

    /// Logs in and starts discovery.
    public func connect() async throws {
        try await controller.connect()
    }

    /// The providers online, current list first, then every change.
    public func providers() -> AsyncStream<[ProviderInfo]> {
        bridge.providerStream()
    }

    /// The online providers that offer `feature`.
    public func providers(offering feature: String) -> AsyncStream<[ProviderInfo]> {
        let all = bridge.providerStream()
        return AsyncStream { continuation in
            let task = Task {
                for await list in all {
                    continuation.yield(list.filter { $0.services.contains(feature) })
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The connection state, current first, then every change.
    public func connectionStates() -> AsyncStream<ConnectionState> {
        bridge.stateStream()
    }

    /// The events of `service` (e.g. "player") on `provider`, subscribed while iterated: the first
    /// iteration subscribes; leaving the loop, cancelling the task or `close()` cancels the Rust
    /// subscription, which unsubscribes. Fails with the `PmnError` of a refused subscription.
    public func events(provider: String, service: String) -> AsyncThrowingStream<ServiceEvent, Error> {
        let bridge = self.bridge
        let controller = self.controller
        return AsyncThrowingStream { continuation in
            // Listen before subscribing, so the first event cannot slip between the two.
            let listening = bridge.addEventContinuation { event in
                guard event.providerJid == provider else { return }
                if case let .other(_, eventService, _) = event, eventService != service { return }
                continuation.yield(event)
            }
            let subscribing = Task {
                do {
                    let handle = try await controller.subscribe(provider: provider, service: service)
                    if Task.isCancelled { handle.cancel() } else { bridge.keep(handle, for: listening) }
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            bridge.onClose(listening) { continuation.finish() }
            continuation.onTermination = { _ in
                subscribing.cancel()
                bridge.removeEventContinuation(listening) // also cancels the kept handle
            }
        }
    }

    /// Subscribes to the events of `service` on `provider` and returns once the provider has
    /// acknowledged (Kotlin's `RemoteControl.subscription`), so the event of a call made after it
    /// returns — the `play` right after — is in `events`, never lost: the stream listens before the
    /// request and buffers (the newest 256) until read. `cancel()`, or `close()` of this remote,
    /// unsubscribes and finishes the stream. Throws the `PmnError` of a refused subscription.
    public func subscription(provider: String, service: String) async throws -> EventSubscription {
        let bridge = self.bridge
        let (stream, continuation) = AsyncStream<ServiceEvent>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let listening = bridge.addEventContinuation { event in
            guard event.providerJid == provider else { return }
            if case let .other(_, eventService, _) = event, eventService != service { return }
            continuation.yield(event)
        }
        bridge.onClose(listening) { continuation.finish() }
        do {
            let handle = try await controller.subscribe(provider: provider, service: service)
            bridge.keep(handle, for: listening)
        } catch {
            bridge.removeEventContinuation(listening)
            continuation.finish()
            throw error
        }
        continuation.onTermination = { _ in bridge.removeEventContinuation(listening) }
        return EventSubscription(events: stream) { continuation.finish() }
    }

    /// Ends every stream and subscription and frees the Rust controller's work. Idempotent.
    public func close() {
        bridge.closeAll()
        Task { [controller] in await controller.disconnect() }
    }
}

/// A subscription the provider has acknowledged (`RemoteControl.subscription`).
public final class EventSubscription: Sendable {
    /// Its events from the request on, in order; finishes on `cancel()` or the remote's `close()`.
    public let events: AsyncStream<ServiceEvent>
    private let finish: @Sendable () -> Void

    init(events: AsyncStream<ServiceEvent>, finish: @escaping @Sendable () -> Void) {
        self.events = events
        self.finish = finish
    }

    /// Unsubscribes on the provider and finishes `events`. Idempotent.
    public func cancel() {
        finish()
    }
}

extension ServiceEvent {
    /// The provider that sent this event; every case carries one (read by reflection, so cases
    /// added to the Rust API later are covered too).
    public var providerJid: String {
        for case let (label?, value) in Mirror(reflecting: self).children where label == "provider" {
            if let jid = value as? String { return jid }
        }
        guard let payload = Mirror(reflecting: self).children.first?.value else { return "" }
        for case let (label?, value) in Mirror(reflecting: payload).children where label == "provider" {
            if let jid = value as? String { return jid }
        }
        return ""
    }
}

/// The listener behind `RemoteControl`: fans callbacks out to stream continuations, never blocking
/// pmn's threads (yielding to an AsyncStream only buffers).
final class StreamBridge: ControllerListener, @unchecked Sendable {
    // All mutable state is guarded by `lock`; continuations are called outside it.
    private let lock = NSLock()
    private var known: [String: ProviderInfo] = [:]
    private var order: [String] = []
    private var state: ConnectionState = .idle
    private var providerContinuations: [UUID: AsyncStream<[ProviderInfo]>.Continuation] = [:]
    private var stateContinuations: [UUID: AsyncStream<ConnectionState>.Continuation] = [:]
    private var eventListeners: [UUID: @Sendable (ServiceEvent) -> Void] = [:]
    private var handles: [UUID: TaskHandle] = [:]
    private var closers: [UUID: @Sendable () -> Void] = [:]
    private var closed = false

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    private var list: [ProviderInfo] { order.compactMap { known[$0] } }

    func providerStream() -> AsyncStream<[ProviderInfo]> {
        AsyncStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let id = UUID()
            let current: [ProviderInfo] = locked {
                providerContinuations[id] = continuation
                return list
            }
            continuation.yield(current)
            continuation.onTermination = { [weak self] _ in
                self?.locked { self?.providerContinuations[id] = nil }
            }
        }
    }

    func stateStream() -> AsyncStream<ConnectionState> {
        AsyncStream(bufferingPolicy: .bufferingNewest(8)) { continuation in
            let id = UUID()
            let current: ConnectionState = locked {
                stateContinuations[id] = continuation
                return state
            }
            continuation.yield(current)
            continuation.onTermination = { [weak self] _ in
                self?.locked { self?.stateContinuations[id] = nil }
            }
        }
    }

    func addEventContinuation(_ deliver: @escaping @Sendable (ServiceEvent) -> Void) -> UUID {
        let id = UUID()
        locked { eventListeners[id] = deliver }
        return id
    }

    func keep(_ handle: TaskHandle, for id: UUID) {
        let stale: TaskHandle? = locked {
            if eventListeners[id] == nil { return handle }
            handles[id] = handle
            return nil
        }
        stale?.cancel()
    }

    func onClose(_ id: UUID, _ body: @escaping @Sendable () -> Void) {
        let now: Bool = locked {
            if closed { return true }
            closers[id] = body
            return false
        }
        if now { body() }
    }

    func removeEventContinuation(_ id: UUID) {
        let handle: TaskHandle? = locked {
            eventListeners[id] = nil
            closers[id] = nil
            return handles.removeValue(forKey: id)
        }
        handle?.cancel()
    }

    func closeAll() {
        let (toCancel, toClose, streams, states) = locked {
            closed = true
            let result = (Array(handles.values), Array(closers.values),
                          Array(providerContinuations.values), Array(stateContinuations.values))
            handles = [:]
            closers = [:]
            eventListeners = [:]
            return result
        }
        toCancel.forEach { $0.cancel() }
        toClose.forEach { $0() }
        streams.forEach { $0.finish() }
        states.forEach { $0.finish() }
    }

    func onProviderOnline(provider: ProviderInfo) throws {
        let (current, targets) = locked {
            if known[provider.jid] == nil { order.append(provider.jid) }
            known[provider.jid] = provider
            return (list, Array(providerContinuations.values))
        }
        targets.forEach { $0.yield(current) }
    }

    func onProviderOffline(jid: String) throws {
        let (current, targets) = locked {
            known[jid] = nil
            order.removeAll { $0 == jid }
            return (list, Array(providerContinuations.values))
        }
        targets.forEach { $0.yield(current) }
    }

    func onEvent(event: ServiceEvent) throws {
        let targets = locked { Array(eventListeners.values) }
        targets.forEach { $0(event) }
    }

    func onConnectionState(state newState: ConnectionState) throws {
        let targets = locked {
            state = newState
            return Array(stateContinuations.values)
        }
        targets.forEach { $0.yield(newState) }
    }
}
