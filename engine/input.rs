//! Reading a local input file (plan, inventory, saved plan, `--set-file` value): regular files
//! only and bounded in size, so a FIFO, a device or a runaway file is refused instead of
//! blocking the command or filling memory.

use std::fs::{Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Plans, inventories and saved plans: a few kilobytes in practice, so 8 MiB is room to spare.
pub const DOCUMENT_LIMIT: u64 = 8 << 20;
/// One parameter value read with `--set-file` (a token, a certificate, a path).
pub const VALUE_LIMIT: u64 = 1 << 20;

/// Why an input file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("it is {kind}, not a regular file")]
    NotRegular { kind: &'static str },
    #[error("it is larger than {}: {}", size_text(*.limit), match .size {
        Some(s) => format!("{} bytes", s),
        None => "it kept growing while it was read".to_string(),
    })]
    TooLarge { size: Option<u64>, limit: u64 },
}

/// Sizes in messages: limits are whole mebibytes or kibibytes.
pub fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

fn check_regular(meta: &Metadata) -> Result<(), InputError> {
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(InputError::NotRegular { kind })
}

/// The bytes of `path`, a regular file of at most `limit` bytes.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    // The type is checked before opening: opening a FIFO for reading waits for a writer, and
    // opening some devices does something.
    let meta = std::fs::metadata(path)?;
    check_regular(&meta)?;
    if meta.len() > limit {
        return Err(InputError::TooLarge {
            size: Some(meta.len()),
            limit,
        });
    }
    // Non-blocking, and checked again once open: the path may have been replaced since.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    check_regular(&file.metadata()?)?;
    // Bounded even when the size lied (a file still growing, or one of /proc's).
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge { size: None, limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Would block forever if it were opened for reading first.
        let e = read_bytes(&fifo, 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a FIFO (named pipe), not a regular file"
        );
        let e = read_bytes(dir.path(), 10).unwrap_err();
        assert_eq!(e.to_string(), "it is a directory, not a regular file");
        let e = read_bytes(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file"
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let e = read_bytes(&big, 1024).unwrap_err();
        assert_eq!(e.to_string(), "it is larger than 1 KiB: 2048 bytes");
        assert_eq!(read_bytes(&big, 2048).unwrap().len(), 2048);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(VALUE_LIMIT), "1 MiB");
        assert_eq!(size_text(DOCUMENT_LIMIT), "8 MiB");
        assert_eq!(size_text(1536), "1536 bytes");
    }
}
