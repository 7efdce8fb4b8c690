// Drives pmn like iOS drives the app: a change of the network path (Wi-Fi ↔ cellular, a new
// interface, the link back) calls `networkChanged()` — pmn probes the server at once, resumes the
// session on a new connection if the old one is dead, and restarts its reconnect backoff — and the
// app going to the background or becoming active calls `setForeground` (XEP-0352 client state, a
// longer keepalive in the background).
//
//     let lifecycle = PMNLifecycle(controller: remote.controller)
//     lifecycle.start()
//     …
//     lifecycle.stop()

import Foundation
import Network
#if canImport(UIKit)
import UIKit
#endif

/// Maps `NWPathMonitor` and the application's activation to a pmn controller or provider.
public final class PMNLifecycle: @unchecked Sendable {
    private let monitor = NWPathMonitor()
    private let queue = DispatchQueue(label: "org.pmn.lifecycle")
    private let networkChanged: @Sendable () async -> Void
    private let setForeground: @Sendable (Bool) -> Void
    private var lastPath: NWPath?
    private var observers: [NSObjectProtocol] = []

    /// Drives `controller`.
    public convenience init(controller: Controller) {
        self.init(
            networkChanged: { await controller.networkChanged() },
            setForeground: { controller.setForeground(foreground: $0) }
        )
    }

    /// Drives `provider`.
    public convenience init(provider: Provider) {
        self.init(
            networkChanged: { await provider.networkChanged() },
            setForeground: { provider.setForeground(foreground: $0) }
        )
    }

    /// The two actions, for tests or other owners.
    public init(
        networkChanged: @escaping @Sendable () async -> Void,
        setForeground: @escaping @Sendable (Bool) -> Void
    ) {
        self.networkChanged = networkChanged
        self.setForeground = setForeground
    }

    /// Starts watching. The first path reported is the current one, not a change.
    public func start() {
        monitor.pathUpdateHandler = { [weak self] path in
            guard let self else { return }
            let previous = self.lastPath
            self.lastPath = path
            guard let previous else { return }
            let moved = previous.status != path.status
                || previous.availableInterfaces.map(\.name) != path.availableInterfaces.map(\.name)
            if moved && path.status == .satisfied {
                let changed = self.networkChanged
                Task { await changed() }
            }
        }
        monitor.start(queue: queue)
        #if canImport(UIKit)
        let center = NotificationCenter.default
        let foreground = setForeground
        observers.append(center.addObserver(
            forName: UIApplication.didBecomeActiveNotification, object: nil, queue: nil
        ) { _ in foreground(true) })
        observers.append(center.addObserver(
            forName: UIApplication.didEnterBackgroundNotification, object: nil, queue: nil
        ) { _ in foreground(false) })
        #endif
    }

    /// Stops watching.
    public func stop() {
        monitor.cancel()
        for observer in observers {
            NotificationCenter.default.removeObserver(observer)
        }
        observers.removeAll()
    }
}
