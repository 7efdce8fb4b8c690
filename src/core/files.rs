//! Bounded reads of the files pmn writes and reads back (key files, ACL, revoked grants, trust
//! store).
//!
//! Those files live in directories other software (or a user, or a restored backup) can write
//! to, so what they hold is outside input: a huge file must not make a store allocate without
//! bound when it opens. Every such read goes through [`read_bounded`] with a bound derived from
//! what the file can legitimately hold. The length is checked twice: from the metadata, so a
//! file that is already too big is refused without reading it, and while reading, through
//! [`Read::take`], because the file can grow between the `stat` and the read (or report no
//! useful length at all, like a pipe or `/dev/zero`). Reading never changes the file: a refused
//! file is left on disk as it was, for the user to inspect.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Why [`read_bounded`] gave no bytes.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file could not be opened or read (missing, no permission, …); the caller tells
    /// [`std::io::ErrorKind::NotFound`] apart, which most stores treat as "empty".
    Io(std::io::Error),
    /// The file holds more than `max` bytes: more than the store ever writes, so it is not one
    /// of its files (or is damaged). Callers report it as they report any corrupt file.
    TooLarge {
        /// The bound that was exceeded, in bytes.
        max: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::TooLarge { max } => {
                write!(
                    f,
                    "larger than {max} bytes, more than it can legitimately hold"
                )
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// The whole content of the file at `path`, refused with [`ReadError::TooLarge`] if it holds
/// more than `max_bytes`.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let mut file = File::open(path).map_err(ReadError::Io)?;
    read_file_bounded(&mut file, max_bytes)
}

/// [`read_bounded`], for a caller that opened (and checked) the file itself.
pub(crate) fn read_file_bounded(file: &mut File, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > max_bytes {
        return Err(ReadError::TooLarge { max: max_bytes });
    }
    // The metadata length is only a hint (the file may have grown since): never reserve more
    // than the bound, and read one byte past it to notice a file that is now too long.
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge { max: max_bytes });
    }
    Ok(buf)
}

/// [`read_bounded`] for a text file: bytes that are not UTF-8 are an
/// [`std::io::ErrorKind::InvalidData`] I/O error, as [`std::fs::read_to_string`] reports them.
pub(crate) fn read_to_string_bounded(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    let bytes = read_bounded(path, max_bytes)?;
    String::from_utf8(bytes)
        .map_err(|e| ReadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_at_the_bound_reads_and_one_byte_more_is_too_large_and_untouched() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'x'; 100]).expect("write");
        assert_eq!(read_bounded(&path, 100).expect("at the bound").len(), 100);
        std::fs::write(&path, vec![b'x'; 101]).expect("write");
        assert!(matches!(
            read_bounded(&path, 100),
            Err(ReadError::TooLarge { max: 100 })
        ));
        assert_eq!(std::fs::read(&path).expect("still there").len(), 101);
    }

    #[test]
    fn a_file_longer_than_its_metadata_says_is_cut_at_the_bound() {
        // /dev/zero reports length 0 and never ends: only the `take` stops the read.
        let zero = Path::new("/dev/zero");
        if zero.exists() {
            assert!(matches!(
                read_bounded(zero, 4096),
                Err(ReadError::TooLarge { max: 4096 })
            ));
        }
    }

    #[test]
    fn missing_file_is_an_io_not_found_and_bad_utf8_is_invalid_data() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("missing");
        assert!(matches!(
            read_bounded(&path, 10),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        assert!(matches!(
            read_to_string_bounded(&path, 10),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData
        ));
        std::fs::write(&path, "text").expect("write");
        assert_eq!(read_to_string_bounded(&path, 10).expect("text"), "text");
    }
}
