//! Signatures per second per key store backend, against raw `ring` signing measured in the same run
//! (`cargo bench --bench keystore`). Each mutual TLS 1.3 handshake of the end-to-end tunnel costs one
//! signature per side, so these figures bound handshakes per second per device.
//!
//! Not measurable here: the JNI backend (Android Keystore / desktop JVM PKCS12) needs a running JVM
//! that calls `PmnPlatform.nativeInit`, which `cargo bench` cannot provide, and the Apple backend
//! needs an Apple device. Their cost is dominated by the platform (StrongBox / Secure Enclave).

use std::hint::black_box;
use std::time::{Duration, Instant};

use pmn::core::identity::{KeyPolicy, KeyStore};
use pmn::platform::software::SoftwareKeyStore;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

/// Runs `op` repeatedly for about `budget` (after a short warm-up) and returns operations per second.
fn per_second(budget: Duration, mut op: impl FnMut()) -> f64 {
    for _ in 0..50 {
        op();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..50 {
            op();
        }
        n += 50;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("PMN_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let message = [0x5au8; 130]; // about the size of a TLS 1.3 CertificateVerify input

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let raw =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let baseline = per_second(budget, || {
        black_box(raw.sign(&rng, black_box(&message)).unwrap());
    });

    let dir = tempfile::tempdir().unwrap();
    let store = SoftwareKeyStore::open(dir.path()).unwrap();
    store.generate("tls", KeyPolicy::TlsIdentity).unwrap();
    let software = per_second(budget, || {
        black_box(store.sign("tls", black_box(&message)).unwrap());
    });

    // What the key cache saves: a fresh store per signature (open, permission check, read, parse).
    let cold = per_second(budget, || {
        let fresh = SoftwareKeyStore::open(dir.path()).unwrap();
        black_box(fresh.sign("tls", black_box(&message)).unwrap());
    });

    println!(
        "ECDSA P-256/SHA-256 signatures per second ({} ms per figure)",
        budget.as_millis()
    );
    println!("{:<44} {:>10} {:>8}", "backend", "sig/s", "ratio");
    let row = |name: &str, rate: f64| {
        println!("{name:<44} {rate:>10.0} {:>8.3}", rate / baseline);
    };
    row("ring EcdsaKeyPair::sign (baseline)", baseline);
    row("software store (KeyStore::sign)", software);
    row("software store, uncached (open+read+parse)", cold);
    println!(
        "a mutual TLS 1.3 handshake needs 1 signature per side: software store ≈ {:.0} µs of it",
        1e6 / software
    );
    println!("JNI (Android Keystore / JVM) and Apple backends: not measurable from cargo bench");
}
