// The facets' callback streams as AsyncStreams, like Kotlin's Flows.kt (issue 14): iterating starts
// watching; leaving the loop or cancelling the task closes the Rust handle. pmn's threads never wait
// for a slow reader: the buffers are unbounded, and each stream is small (requests are rate-limited,
// failures and pairings are rare). Only syntax-checked here (no Swift toolchain on this machine).
//
//     for await request in try owner.accessRequests() { … owner.approveAccess(…) }
//     for await outcome in try tv.trust().pairingOutcomes() { if case .paired = outcome { closeCodeScreen() } }

import Foundation

/// Hands each callback to an AsyncStream continuation; `Sendable` because pmn calls it from its
/// own threads (a continuation may be yielded to from any thread).
private final class Yielder<Element: Sendable>: Sendable {
    let continuation: AsyncStream<Element>.Continuation
    init(_ continuation: AsyncStream<Element>.Continuation) { self.continuation = continuation }
}

private final class AccessRequestYielder: AccessListener {
    let out: Yielder<AccessRequest>
    init(_ out: Yielder<AccessRequest>) { self.out = out }
    func onAccessRequest(request: AccessRequest) throws { out.continuation.yield(request) }
}

private final class TunnelFailureYielder: TunnelFailureListener {
    let out: Yielder<TunnelFailure>
    init(_ out: Yielder<TunnelFailure>) { self.out = out }
    func onTunnelFailure(peer: String, error: PmnError) throws {
        out.continuation.yield(TunnelFailure(peer: peer, error: error))
    }
}

private final class PairingYielder: ProviderPairingListener {
    let out: Yielder<PairingOutcome>
    init(_ out: Yielder<PairingOutcome>) { self.out = out }
    func onPaired(peer: String, device: TrustedDevice) throws {
        out.continuation.yield(.paired(peer: peer, device: device))
    }
    func onPairingFailed(peer: String, error: PmnError) throws {
        out.continuation.yield(.failed(peer: peer, error: error))
    }
}

private final class PasswordYielder: NetworkPasswordListener {
    let out: Yielder<String>
    init(_ out: Yielder<String>) { self.out = out }
    func onNetworkPasswordChanged(password: String) throws { out.continuation.yield(password) }
}

/// An end-to-end tunnel of this device that failed or was refused.
public struct TunnelFailure: Sendable {
    /// The other device's full JID.
    public let peer: String
    /// `.Tls` for altered bytes or a failed handshake, `.Forbidden` for an untrusted key.
    public let error: PmnError
}

/// How a pairing attempt with the code this provider shows ended.
public enum PairingOutcome: Sendable {
    /// `peer` typed the right code; `device` is now trusted.
    case paired(peer: String, device: TrustedDevice)
    /// `peer` tried and failed (wrong or expired code, pairing locked); nothing was pinned.
    case failed(peer: String, error: PmnError)
}

/// Starts watching with `watch` when the stream is made and closes the handle when iteration ends.
private func stream<Element: Sendable>(
    _ watch: (Yielder<Element>) throws -> TaskHandle
) rethrows -> AsyncStream<Element> {
    let (stream, continuation) = AsyncStream<Element>.makeStream(bufferingPolicy: .unbounded)
    let handle = try watch(Yielder(continuation))
    continuation.onTermination = { _ in handle.cancel() }
    return stream
}

extension OwnerConsole {
    /// Guests' requests to this owner device: the ones waiting for an answer first, then each new one.
    public func accessRequests() throws -> AsyncStream<AccessRequest> {
        try stream { try watchAccessRequests(listener: AccessRequestYielder($0)) }
    }
}

extension Trust {
    /// Every tunnel of this device that fails or is refused from now on.
    public func tunnelFailures() -> AsyncStream<TunnelFailure> {
        stream { watchTunnelFailures(listener: TunnelFailureYielder($0)) }
    }

    /// Providers: the outcome of every pairing attempt from now on (close the screen showing the
    /// code on `.paired`). Throws `PmnError.Config` on a controller.
    public func pairingOutcomes() throws -> AsyncStream<PairingOutcome> {
        try stream { try watchPairing(listener: PairingYielder($0)) }
    }

    /// The network password at every change from now on (a rotation here or by another device): store it.
    public func networkPasswords() -> AsyncStream<String> {
        stream { watchNetworkPassword(listener: PasswordYielder($0)) }
    }
}
