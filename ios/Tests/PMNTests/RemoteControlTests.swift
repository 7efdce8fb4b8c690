// The Kotlin RemoteControlTest scenario in Swift, against a Prosody named by PMN_SERVER / PMN_CA
// (e.g. from tests/prosody/prosody.sh). Compile-checked only where a Swift toolchain exists; on the
// project's CI machine it is syntax-checked (scripts/swift-syntax-check.py).

import Foundation
import XCTest
@testable import PMN

final class RemoteControlTests: XCTestCase {
    private func config(_ device: String) throws -> ConnectionConfig {
        guard let server = ProcessInfo.processInfo.environment["PMN_SERVER"] else {
            throw XCTSkip("set PMN_SERVER (and PMN_CA) to a test Prosody")
        }
        let ca = try ProcessInfo.processInfo.environment["PMN_CA"].map { try String(contentsOfFile: $0, encoding: .utf8) }
        return ConnectionConfig(
            network: "home@home.test",
            password: "home-secret",
            device: "\(device)-\(UUID().uuidString.prefix(8))",
            server: server,
            testCaPem: ca,
            connectTimeoutMs: 15000,
            rpcTimeoutMs: 10000,
            e2e: nil,
            owner: nil,
            guests: nil,
            // The service-layer scenario, in clear; the tunnel is tested from Rust and Kotlin.
            plainTransport: true
        )
    }

    func testProvidersStreamAndEventsStreamIsTheSubscription() async throws {
        let tv = try await startSimulatedPlayer(config: try config("tv"), name: "Swift TV")
        let remote = try RemoteControl(config: try config("phone"))
        try await remote.connect()

        var jid = ""
        for await players in remote.providers(offering: RemoteControl.playerFeature) {
            if let found = players.first(where: { $0.name == "Swift TV" }) {
                jid = found.jid
                break
            }
        }

        let collector = Task { () -> ServiceEvent? in
            for try await event in remote.events(provider: jid, service: "player") {
                if case .playerStateChanged = event { return event }
            }
            return nil
        }
        while tv.subscriptionCount() == 0 { try await Task.sleep(nanoseconds: 20_000_000) }
        _ = try await remote.controller.play(provider: jid, uri: "file:///movies/swift.mkv")
        let event = try await collector.value
        XCTAssertEqual(event?.providerJid, jid)

        // Leaving the loop ended the subscription in Rust.
        while tv.subscriptionCount() != 0 { try await Task.sleep(nanoseconds: 20_000_000) }
        remote.close()
        tv.stop()
    }

    func testLogsReachASink() throws {
        final class Lines: LogSink, @unchecked Sendable {
            private let lock = NSLock()
            private(set) var count = 0
            func log(level: LogLevel, target: String, message: String) throws {
                lock.lock()
                count += 1
                lock.unlock()
            }
        }
        try setLogSink(sink: Lines(), level: .debug)
        setLogLevel(level: .warn)
        try PMNLog.toOSLog(level: .info)
    }
}
