//! Native snapshot checks: the SHA-256 trailer of `snapshot save` files and bbolt's meta pages.
//!
//! A snapshot streamed by Maintenance.Snapshot is a bbolt file followed by the 32-byte
//! SHA-256 of everything before it; it has the trailer iff `size % 512 == 32`. bbolt keeps
//! two meta pages (page 0 and 1); a file is usable when at least one is valid, and the
//! valid one with the higher txid is the current state.

pub mod bbolt;
pub mod status;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

const BBOLT_MAGIC: u32 = 0xED0C_DAED;
const BBOLT_VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
/// magic, version, page size, flags, root (16), freelist, high-water pgid, txid, checksum.
const META_LEN: usize = 64;
const TRAILER: u64 = 32;

/// What a sound snapshot looks like, as far as the trailer and meta pages tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    /// sha256 of the whole file, as `sha256sum` prints it.
    pub sha256: String,
    /// Whether the file carries a trailer (a raw `member/snap/db` copy does not).
    pub has_trailer: bool,
    pub page_size: u32,
    pub txid: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: io::Error },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error(
        "{path} has no SHA-256 trailer (size {size} is not 32 more than a multiple of 512): a raw data file or a truncated snapshot"
    )]
    NoTrailer { path: String, size: u64 },
    #[error("{path}: the SHA-256 trailer does not match the content (corrupted or truncated)")]
    TrailerMismatch { path: String },
    #[error("{path} is not a bbolt database: {why}")]
    NotBbolt { path: String, why: String },
    #[error("{path}: sha256 is {actual}, expected {expected}")]
    DigestMismatch {
        path: String,
        actual: String,
        expected: String,
    },
}

/// Checks a local `snapshot save` file: the trailer must be present and match, and a meta page must be valid.
/// Reads the file once, in fixed-size chunks, so memory stays flat whatever its size.
pub fn verify(path: &Path) -> Result<Verified, SnapshotError> {
    let p = path.display().to_string();
    let io = |error| SnapshotError::Io {
        path: p.clone(),
        error,
    };
    let mut f = File::open(path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if size == 0 {
        return Err(SnapshotError::Empty { path: p });
    }
    let has_trailer = size % 512 == TRAILER;
    if !has_trailer {
        return Err(SnapshotError::NoTrailer { path: p, size });
    }
    let body = size - TRAILER;
    let mut head = vec![0u8; 2 * 65536usize.min(body as usize)];
    let mut whole = Sha256::new();
    let mut content = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut head_len = 0usize;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        whole.update(chunk);
        if done < body {
            let in_body = ((body - done) as usize).min(n);
            content.update(&chunk[..in_body]);
        }
        if head_len < head.len() {
            let k = (head.len() - head_len).min(n);
            head[head_len..head_len + k].copy_from_slice(&chunk[..k]);
            head_len += k;
        }
        done += n as u64;
    }
    if done != size {
        return Err(io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file changed size while being read",
        )));
    }
    f.seek(SeekFrom::Start(body)).map_err(io)?;
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer).map_err(io)?;
    if content.finalize().as_slice() != trailer {
        return Err(SnapshotError::TrailerMismatch { path: p });
    }
    let (page_size, txid) =
        newest_meta(&head[..head_len]).map_err(|why| SnapshotError::NotBbolt {
            path: p.clone(),
            why,
        })?;
    Ok(Verified {
        size,
        sha256: hex(whole.finalize().as_slice()),
        has_trailer,
        page_size,
        txid,
    })
}

/// The sha256 of a local file, as `sha256sum` prints it.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(h.finalize().as_slice()));
        }
        h.update(&buf[..n]);
    }
}

/// Compares a local file's sha256 with an expected digest.
pub fn check_sha256(path: &Path, expected: &str) -> Result<String, SnapshotError> {
    let p = path.display().to_string();
    let actual = sha256_file(path).map_err(|error| SnapshotError::Io {
        path: p.clone(),
        error,
    })?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(actual)
    } else {
        Err(SnapshotError::DigestMismatch {
            path: p,
            actual,
            expected: expected.to_string(),
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The page size and txid of the newest valid meta page, or why none is valid.
fn newest_meta(head: &[u8]) -> Result<(u32, u64), String> {
    let first = parse_meta(head, 0);
    // Page 1 sits one page size further; if page 0 is damaged, try the common page sizes.
    let sizes: Vec<u32> = match &first {
        Ok(m) => vec![m.page_size],
        Err(_) => vec![4096, 8192, 16384, 65536],
    };
    let second = sizes
        .iter()
        .map(|&ps| parse_meta(head, ps as usize))
        .find(|m| m.is_ok())
        .unwrap_or_else(|| Err("meta page 1 is not valid".into()));
    match (first, second) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid {
            (b.page_size, b.txid)
        } else {
            (a.page_size, a.txid)
        }),
        (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok((a.page_size, a.txid)),
        (Err(a), Err(_)) => Err(a),
    }
}

struct Meta {
    page_size: u32,
    txid: u64,
}

fn parse_meta(head: &[u8], offset: usize) -> Result<Meta, String> {
    let m = head
        .get(offset + PAGE_HEADER..offset + PAGE_HEADER + META_LEN)
        .ok_or_else(|| "the file is too short for a meta page".to_string())?;
    let u32_at = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&m[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(0) != BBOLT_MAGIC {
        return Err(format!("meta page at offset {offset} has no bbolt magic"));
    }
    if u32_at(4) != BBOLT_VERSION {
        return Err(format!(
            "meta page at offset {offset} has version {}, expected {BBOLT_VERSION}",
            u32_at(4)
        ));
    }
    if fnv1a64(&m[..56]) != u64_at(56) {
        return Err(format!("meta page at offset {offset} fails its checksum"));
    }
    let page_size = u32_at(8);
    if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!(
            "meta page at offset {offset} has page size {page_size}"
        ));
    }
    Ok(Meta {
        page_size,
        txid: u64_at(48),
    })
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn refuses_files_that_are_not_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(verify(&empty), Err(SnapshotError::Empty { .. })));
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![7u8; 1000]).unwrap();
        assert!(matches!(
            verify(&junk),
            Err(SnapshotError::NoTrailer { .. })
        ));
        // Right size and a matching trailer, but no bbolt inside.
        let body = vec![1u8; 512 * 8];
        let mut file = body.clone();
        file.extend_from_slice(Sha256::digest(&body).as_slice());
        let fake = dir.path().join("fake.db");
        std::fs::write(&fake, &file).unwrap();
        assert!(matches!(verify(&fake), Err(SnapshotError::NotBbolt { .. })));
        // A flipped bit in the body breaks the trailer.
        file[100] ^= 1;
        std::fs::write(&fake, &file).unwrap();
        assert!(matches!(
            verify(&fake),
            Err(SnapshotError::TrailerMismatch { .. })
        ));
    }
}
