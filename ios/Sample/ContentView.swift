import PMN
import SwiftUI

/// One screen: the players online, a tap toggles play/pause; the last event underneath.
struct ContentView: View {
    // A real app reads these from its onboarding/pairing screen; placeholders here.
    // The device's TLS key lives in the keychain (Secure Enclave where there is one); pinned peers
    // in the app's Application Support directory.
    private static func config() throws -> ConnectionConfig {
        let support = try FileManager.default.url(
            for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        return ConnectionConfig(
            network: "home@example.org",
            password: "change-me",
            device: "ios-sample",
            server: nil,
            testCaPem: nil,
            connectTimeoutMs: 15000,
            rpcTimeoutMs: 10000,
            e2e: E2eOptions(
                keyStore: try DeviceKeyStore.platform(),
                keyAlias: "tls",
                trustFile: support.appendingPathComponent("trust.json").path,
                requireTunnel: true
            ),
            owner: nil,
            guests: nil,
            plainTransport: false
        )
    }

    @State private var remote: RemoteControl?
    @State private var players: [ProviderInfo] = []
    @State private var status = "connecting…"

    var body: some View {
        NavigationStack {
            List(players, id: \.jid) { player in
                Button(player.name) { Task { await toggle(player) } }
                    // Iterating the stream is the subscription; SwiftUI cancels it with the row.
                    .task {
                        guard let remote else { return }
                        do {
                            for try await event in remote.events(provider: player.jid, service: "player") {
                                if case let .playerStateChanged(_, now) = event {
                                    status = "\(player.name): \(now.state)"
                                }
                            }
                        } catch {
                            status = "\(player.name): \(error)"
                        }
                    }
            }
            .navigationTitle("pmn")
            .safeAreaInset(edge: .bottom) { Text(status).padding() }
        }
        .task { await run() }
    }

    private func run() async {
        do {
            let remote = try RemoteControl(config: try Self.config())
            self.remote = remote
            try await remote.connect()
            status = "online"
            for await list in remote.providers(offering: RemoteControl.playerFeature) {
                players = list
            }
        } catch {
            status = "cannot connect: \(error)"
        }
    }

    private func toggle(_ player: ProviderInfo) async {
        guard let controller = remote?.controller else { return }
        do {
            let now = try await controller.player(provider: player.jid).status()
            if now.state == .playing {
                _ = try await controller.player(provider: player.jid).pause()
            } else {
                _ = try await controller.player(provider: player.jid).resume()
            }
        } catch {
            status = "\(player.name): \(error)"
        }
    }
}
