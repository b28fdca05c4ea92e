//! Native snapshot checks: file digests here, the bbolt walk in `bbolt`, etcdutl's figures in `status`.
//!
//! A snapshot streamed by Maintenance.Snapshot is the bbolt pages in use followed by the
//! 32-byte SHA-256 of them; a raw copy of member/snap/db is whole pages (see `status`).

pub mod bbolt;
pub mod contents;
pub mod s3;
pub mod status;
pub mod wire;

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

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

/// Compares a local file's sha256 with an expected digest; the error says both.
pub fn check_sha256(path: &Path, expected: &str) -> Result<String, String> {
    let actual = sha256_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(actual)
    } else {
        Err(format!(
            "{}: sha256 is {actual}, expected {expected}",
            path.display()
        ))
    }
}

pub use runbook_shared::hex;

#[cfg(test)]
mod tests {
    use super::status::{StatusError, status_of_bytes};
    use sha2::{Digest, Sha256};

    #[test]
    fn refuses_files_that_are_not_snapshots() {
        assert!(matches!(
            status_of_bytes(b""),
            Err(StatusError::Empty { .. })
        ));
        assert!(matches!(
            status_of_bytes(&[7u8; 1000]),
            Err(StatusError::Bbolt { .. })
        ));
        // Right size and a matching trailer, but no bbolt inside.
        let body = vec![1u8; 512 * 8];
        let mut file = body.clone();
        file.extend_from_slice(Sha256::digest(&body).as_slice());
        let e = status_of_bytes(&file).unwrap_err().to_string();
        assert!(e.contains("not a bbolt database"), "{e}");
    }

    #[test]
    fn tells_a_damaged_end_from_a_raw_copy() {
        use super::status::{Damage, Trailer};
        let saved = include_bytes!("../../tests/fixtures/snapshots/etcd-3.6.db");
        let raw = include_bytes!("../../tests/fixtures/snapshots/member-snap-db-3.6");
        let trailer = |b: &[u8]| status_of_bytes(b).unwrap().sha256;
        assert_eq!(trailer(saved), Trailer::Ok);
        assert_eq!(trailer(raw), Trailer::Absent);
        // The body of a save file alone is a raw copy.
        assert_eq!(trailer(&saved[..saved.len() - 32]), Trailer::Absent);
        assert_eq!(
            trailer(&saved[..saved.len() - 5]),
            Trailer::Damaged(Damage::PartialPage {
                extra: 27,
                page_size: 4096
            })
        );
        let mut padded = saved.to_vec();
        padded.resize(6 * 4096, 0);
        assert_eq!(
            trailer(&padded),
            Trailer::Damaged(Damage::AfterTrailer {
                saved: 20512,
                extra: 4064,
                zeros: true
            })
        );
        // A flipped byte in the trailer of a well-shaped file is a mismatch, not damage.
        let mut flipped = saved.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(trailer(&flipped), Trailer::Mismatch);
    }
}
