//! Numbers at the FFI are signed (issue 14): Kotlin's unsigned types (`ULong`, `UByte`) need `u`
//! literals and conversions in every app and do not mix with `Long`/`Int` arithmetic or
//! `kotlin.time`, and Swift code counts in `Int`. So every id, count, time, size and duration
//! crosses as `i64` (or `i32` for what the core keeps in 32 bits or less). Going out, a value that
//! does not fit saturates (no pmn value comes near it); coming in, a value out of range is
//! `PmnException.Config` naming the argument, before anything is sent.

use super::error::{config, PmnError};

/// A core `u64` for the app.
pub(crate) fn out64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A core `u32` for the app.
pub(crate) fn out32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The app's `name` as a core `u64`: negative is a configuration error.
pub(crate) fn in64(name: &str, value: i64) -> Result<u64, PmnError> {
    u64::try_from(value).map_err(|_| config(format!("{name} must not be negative (got {value})")))
}

/// The app's `name` as a core `u32`: negative is a configuration error.
pub(crate) fn in32(name: &str, value: i32) -> Result<u32, PmnError> {
    u32::try_from(value).map_err(|_| config(format!("{name} must not be negative (got {value})")))
}

/// The app's `name` as a core `u8` (a volume): outside 0..=255 is a configuration error (the
/// provider enforces its own 0..=100).
pub(crate) fn in8(name: &str, value: i32) -> Result<u8, PmnError> {
    u8::try_from(value).map_err(|_| config(format!("{name} must be 0..=100 (got {value})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_saturates_and_in_refuses_what_does_not_fit() {
        assert_eq!(out64(7), 7);
        assert_eq!(out64(u64::MAX), i64::MAX);
        assert_eq!(out32(u32::MAX), i32::MAX);
        assert_eq!(in64("timeoutMs", 5).unwrap(), 5);
        assert!(
            matches!(in64("timeoutMs", -1), Err(PmnError::Config { detail }) if detail.contains("timeoutMs"))
        );
        assert!(matches!(in32("offset", -1), Err(PmnError::Config { .. })));
        assert_eq!(in8("volume", 40).unwrap(), 40);
        assert!(matches!(in8("volume", 256), Err(PmnError::Config { .. })));
    }
}
