//! Reading a local input file (plan, inventory, saved plan, `--set-file` value): regular files
//! only and bounded in size, so a FIFO, a device or a runaway file is refused instead of
//! blocking the command or filling memory; and text that is not UTF-8 located to its first
//! bad byte.

use std::fs::{File, Metadata, OpenOptions};
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

/// Sizes in messages, in binary units: the limits read "1 MiB", "8 MiB".
pub fn size_text(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY.decimal_places(1))
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

/// Opens `path` for reading if it is a regular file, never blocking on a FIFO.
pub fn open_regular(path: &Path) -> Result<File, InputError> {
    // The type is checked before opening: opening a FIFO for reading waits for a writer, and
    // opening some devices does something.
    check_regular(&std::fs::metadata(path)?)?;
    // Non-blocking, and checked again once open: the path may have been replaced since.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    check_regular(&file.metadata()?)?;
    Ok(file)
}

/// The bytes of `path`, a regular file of at most `limit` bytes.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, InputError> {
    let file = open_regular(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(InputError::TooLarge {
            size: Some(size),
            limit,
        });
    }
    // Bounded even when the size lied (a file still growing, or one of /proc's).
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge { size: None, limit });
    }
    Ok(bytes)
}

/// Where a file stops being UTF-8: the first bad byte, by offset and by line and column (in
/// characters, as an editor counts them), both 1-based except the offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8 {
    /// Bytes before the bad one.
    pub offset: usize,
    pub line: u64,
    pub column: u64,
    /// The bad byte; `None` when the file ends inside a character.
    pub byte: Option<u8>,
}

impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.byte {
            Some(b) => write!(
                f,
                "not UTF-8 text: byte {b:#04x} at byte offset {} cannot start or continue a UTF-8 character",
                self.offset
            ),
            None => write!(
                f,
                "not UTF-8 text: the file ends inside a UTF-8 character that starts at byte offset {}",
                self.offset
            ),
        }
    }
}

/// The bytes as text, or where they stop being UTF-8 (with the bytes back, lossily readable).
pub fn utf8(bytes: Vec<u8>) -> Result<String, (NotUtf8, Vec<u8>)> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let truncated = e.utf8_error().error_len().is_none();
        let bytes = e.into_bytes();
        // Everything before `offset` is valid, so it can be counted as text.
        let before = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let at = NotUtf8 {
            offset,
            line: before.matches('\n').count() as u64 + 1,
            column: before[line_start..].chars().count() as u64 + 1,
            byte: if truncated { None } else { Some(bytes[offset]) },
        };
        (at, bytes)
    })
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
    fn the_first_bad_byte_is_located() {
        let (at, _) = utf8(b"name: x\nd\xc3\xa9j\xe0 vu\n".to_vec()).unwrap_err();
        assert_eq!(
            at,
            NotUtf8 {
                offset: 12,
                line: 2,
                column: 4,
                byte: Some(0xe0)
            }
        );
        assert_eq!(
            at.to_string(),
            "not UTF-8 text: byte 0xe0 at byte offset 12 cannot start or continue a UTF-8 character"
        );
        let (at, _) = utf8(b"ab\xc3".to_vec()).unwrap_err();
        assert_eq!((at.line, at.column, at.byte), (1, 3, None));
        assert_eq!(utf8(b"ok\n".to_vec()).unwrap(), "ok\n");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(VALUE_LIMIT), "1 MiB");
        assert_eq!(size_text(DOCUMENT_LIMIT), "8 MiB");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(500), "500 B");
    }
}
