//! `snapshot status` figures, computed exactly as etcdutl (and etcdctl <= 3.5) compute them,
//! plus what an operator wants to know before restoring: trailer, live keys, consistent
//! index, compaction, the members recorded in the file.
//!
//! HASH is CRC-32C over, for each top-level bucket in byte order, its name then every key and
//! value of it (a nested bucket contributes its name only, as bbolt's ForEach yields it);
//! REVISION is the main revision of the last key of bucket `key`; TOTAL KEYS counts every
//! entry of every top-level bucket; TOTAL SIZE is the high-water mark times the page size.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::bbolt::{BboltError, Db, Entry, Root, bucket_root};
use super::hex;

/// What the trailer says about the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trailer {
    /// A `snapshot save` file whose SHA-256 trailer matches.
    Ok,
    /// It has a trailer's size but the digest does not match: corrupted or truncated.
    Mismatch,
    /// No trailer: a copy of `member/snap/db` (restore needs --skip-hash-check).
    Absent,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub sha256: Trailer,
    /// CRC-32C as etcdutl prints it (`%x`).
    pub hash: String,
    pub revision: i64,
    /// Entries of every bucket (etcdutl and etcdctl up to 3.5).
    pub total_keys: u64,
    /// User keys whose latest revision is not a deletion (what etcdutl 3.6 reports).
    pub live_keys_36: u64,
    pub total_size: u64,
    /// sha256 of the whole file, as `sha256sum` prints it.
    pub file_sha256: String,
    pub file_size: u64,
    pub page_size: u32,
    pub txid: u64,
    pub storage_version: Option<String>,
    pub consistent_index: Option<u64>,
    pub term: Option<u64>,
    pub compact_revision_scheduled: Option<i64>,
    pub compact_revision_finished: Option<i64>,
    pub members: Vec<Member>,
    /// Top-level buckets and their entry counts.
    pub buckets: Vec<(String, u64)>,
}

impl Status {
    /// Whether etcd 3.6 or later wrote this snapshot: only they record a storage version.
    /// It decides what etcdutl of that version prints as TOTAL KEYS.
    pub fn counts_live_keys(&self) -> bool {
        self.storage_version.as_deref().is_some_and(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (3, 6)
        })
    }

    /// TOTAL KEYS as the etcdutl of the snapshot's own etcd version prints it: live keys at
    /// the latest revision from 3.6 on, every pair of every bucket before.
    pub fn etcdutl_total_keys(&self) -> u64 {
        if self.counts_live_keys() {
            self.live_keys_36
        } else {
            self.total_keys
        }
    }

    /// What `etcdutl_total_keys` counts, in words.
    pub fn total_keys_meaning(&self) -> &'static str {
        if self.counts_live_keys() {
            "live keys at the latest revision (etcd 3.6 counting: a 3.6 snapshot)"
        } else {
            "every key-value pair of every bucket (etcd <= 3.5 counting: a snapshot without a 3.6 storage version)"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path}: {error}")]
    Bbolt { path: String, error: BboltError },
    #[error("{path}: top-level entry {name:?} is not a bucket, so this is not an etcd database")]
    NotEtcd { path: String, name: String },
}

/// Reads a snapshot (or a raw db file) and checks it completely.
pub fn status(path: &Path) -> Result<Status, StatusError> {
    let (file, size, p) = open_nonempty(path)?;
    let io = |error| StatusError::Io {
        path: p.clone(),
        error,
    };
    let body_len = body_len(size);
    // Two cores, two jobs: the digest reads the file front to back while the walk reads pages.
    let (digests, figures) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| Digests::of_file(path));
        let walked = figures(&file, body_len);
        (hashing.join(), walked)
    });
    let digests = digests
        .map_err(|_| io(std::io::Error::other("the digest thread panicked")))?
        .map_err(io)?;
    let mut st = figures.map_err(|e| e.at(&p))?;
    digests.apply(&mut st, size);
    Ok(st)
}

/// The same check for a file whose digests are already known (computed while it was written),
/// so a freshly saved snapshot is not hashed twice.
pub fn status_with(path: &Path, digests: Digests) -> Result<Status, StatusError> {
    let (file, size, p) = open_nonempty(path)?;
    let mut st = figures(&file, body_len(size)).map_err(|e| e.at(&p))?;
    digests.apply(&mut st, size);
    Ok(st)
}

/// Opens a file that must not be empty: the file, its size, its path for messages.
fn open_nonempty(path: &Path) -> Result<(File, u64, String), StatusError> {
    let p = path.display().to_string();
    let io = |error| StatusError::Io {
        path: p.clone(),
        error,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size == 0 {
        return Err(StatusError::Empty { path: p });
    }
    Ok((file, size, p))
}

/// A snapshot has a trailer iff its size is 32 more than a multiple of 512.
fn body_len(size: u64) -> u64 {
    if size % 512 == 32 { size - 32 } else { size }
}

/// The digests a status needs: of everything but the last 32 bytes (the body, when there is
/// a trailer), of the whole file, and those last bytes.
pub struct Digests {
    pub body: [u8; 32],
    pub whole: [u8; 32],
    pub tail: Vec<u8>,
}

impl Digests {
    fn of_file(path: &Path) -> std::io::Result<Digests> {
        let mut f = File::open(path)?;
        let mut d = DigestWriter::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(d.finish());
            }
            d.update(&buf[..n]);
        }
    }

    fn apply(self, st: &mut Status, size: u64) {
        st.sha256 = if body_len(size) == size {
            Trailer::Absent
        } else if self.body.as_slice() == self.tail.as_slice() {
            Trailer::Ok
        } else {
            Trailer::Mismatch
        };
        st.file_sha256 = hex(&self.whole);
        st.file_size = size;
    }
}

/// Hashes bytes as they stream by, once: the hasher runs 32 bytes behind, so where the
/// stream ends its state is the body's digest, and the held bytes finish the whole's.
/// Works when the size is not known in advance (a snapshot arriving from etcd).
#[derive(Default)]
pub struct DigestWriter {
    hasher: Sha256,
    held: Vec<u8>,
}

impl DigestWriter {
    pub fn update(&mut self, chunk: &[u8]) {
        let total = self.held.len() + chunk.len();
        if total <= 32 {
            self.held.extend_from_slice(chunk);
            return;
        }
        let emit = total - 32;
        if emit <= self.held.len() {
            self.hasher.update(&self.held[..emit]);
            self.held.drain(..emit);
            self.held.extend_from_slice(chunk);
        } else {
            self.hasher.update(&self.held);
            let from_chunk = emit - self.held.len();
            self.hasher.update(&chunk[..from_chunk]);
            self.held.clear();
            self.held.extend_from_slice(&chunk[from_chunk..]);
        }
    }

    pub fn finish(mut self) -> Digests {
        let body: [u8; 32] = self.hasher.clone().finalize().into();
        self.hasher.update(&self.held);
        Digests {
            body,
            whole: self.hasher.finalize().into(),
            tail: self.held,
        }
    }
}

/// The same check on bytes in memory (the fuzzer's entry point).
pub fn status_of_bytes(bytes: &[u8]) -> Result<Status, StatusError> {
    if bytes.is_empty() {
        return Err(StatusError::Empty {
            path: "<memory>".into(),
        });
    }
    let mut st = figures(&bytes, body_len(bytes.len() as u64)).map_err(|e| e.at("<memory>"))?;
    let mut d = DigestWriter::default();
    d.update(bytes);
    d.finish().apply(&mut st, bytes.len() as u64);
    Ok(st)
}

/// Why the database part of a file is not an etcd database, before the path is known.
enum Refusal {
    Bbolt(BboltError),
    NotEtcd(String),
}

impl Refusal {
    fn at(self, path: &str) -> StatusError {
        match self {
            Refusal::Bbolt(error) => StatusError::Bbolt {
                path: path.to_string(),
                error,
            },
            Refusal::NotEtcd(name) => StatusError::NotEtcd {
                path: path.to_string(),
                name,
            },
        }
    }
}

/// Walks the whole database once: checks every page and computes every figure.
fn figures(src: &dyn super::bbolt::ReadAt, body_len: u64) -> Result<Status, Refusal> {
    let bolt = Refusal::Bbolt;
    let mut db = Db::open(src, body_len).map_err(bolt)?;
    let meta = db.meta;

    let mut crc = 0u32;
    let mut s = Walk::default();
    let mut not_bucket = None;
    db.for_each(Root::Page(meta.root), &mut |db, e| {
        let Entry::Bucket { name, header, page } = e else {
            if let Entry::Pair { key, .. } = e {
                not_bucket.get_or_insert_with(|| String::from_utf8_lossy(key).into_owned());
            }
            return Ok(());
        };
        crc = crc32c::crc32c_append(crc, name);
        let bucket = String::from_utf8_lossy(name).into_owned();
        let mut count = 0u64;
        db.for_each(bucket_root(header, page), &mut |db, e| {
            count += 1;
            match e {
                Entry::Pair { key, value } => {
                    crc = crc32c::crc32c_append(crc, key);
                    crc = crc32c::crc32c_append(crc, value);
                    s.record(&bucket, key, value);
                }
                Entry::Bucket { name, header, page } => {
                    // ForEach yields a nested bucket as (name, nil); its pages are still checked.
                    crc = crc32c::crc32c_append(crc, name);
                    check_only(db, bucket_root(header, page))?;
                }
            }
            Ok(())
        })?;
        s.total_keys += count;
        s.buckets.push((bucket, count));
        Ok(())
    })
    .map_err(bolt)?;
    if let Some(name) = not_bucket {
        return Err(Refusal::NotEtcd(name));
    }
    let free = db.check_freelist().map_err(bolt)?;
    db.check_coverage(&free).map_err(bolt)?;

    Ok(Status {
        sha256: Trailer::Absent,
        hash: format!("{crc:x}"),
        revision: s.revision,
        total_keys: s.total_keys,
        live_keys_36: s.live.values().filter(|live| **live).count() as u64,
        total_size: meta.pgid * u64::from(meta.page_size),
        file_sha256: String::new(),
        file_size: 0,
        page_size: meta.page_size,
        txid: meta.txid,
        storage_version: s.storage_version,
        consistent_index: s.consistent_index,
        term: s.term,
        compact_revision_scheduled: s.scheduled,
        compact_revision_finished: s.finished,
        members: s.members,
        buckets: s.buckets,
    })
}

fn check_only(db: &mut Db<'_>, root: Root) -> Result<(), BboltError> {
    db.for_each(root, &mut |db, e| match e {
        Entry::Bucket { header, page, .. } => check_only(db, bucket_root(header, page)),
        Entry::Pair { .. } => Ok(()),
    })
}

#[derive(Default)]
struct Walk {
    revision: i64,
    total_keys: u64,
    /// Per user key (by a 64-bit digest, to keep memory small): is its latest revision live?
    /// Keys are walked in revision order, so the last write wins.
    live: HashMap<u64, bool>,
    storage_version: Option<String>,
    consistent_index: Option<u64>,
    term: Option<u64>,
    scheduled: Option<i64>,
    finished: Option<i64>,
    members: Vec<Member>,
    buckets: Vec<(String, u64)>,
}

impl Walk {
    fn record(&mut self, bucket: &str, key: &[u8], value: &[u8]) {
        match bucket {
            "key" => {
                if let Some(main) = main_revision(key) {
                    self.revision = main;
                }
                // A revision key is main(8) '_' sub(8), with a trailing 't' for a deletion.
                let tombstone = key.len() == 18 && key[17] == b't';
                if let Some(user_key) = proto_bytes_field(value, 1) {
                    let digest = u64::from_be_bytes(
                        Sha256::digest(user_key)[..8].try_into().unwrap_or([0; 8]),
                    );
                    self.live.insert(digest, !tombstone);
                }
            }
            "meta" => match key {
                b"consistent_index" => self.consistent_index = be_u64(value),
                b"term" => self.term = be_u64(value),
                b"storageVersion" => {
                    self.storage_version = Some(String::from_utf8_lossy(value).into_owned())
                }
                b"scheduledCompactRev" => self.scheduled = main_revision(value),
                b"finishedCompactRev" => self.finished = main_revision(value),
                _ => {}
            },
            "members" => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(value) {
                    let urls = v["peerURLs"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|u| u.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.members.push(Member {
                        id: String::from_utf8_lossy(key).into_owned(),
                        name: v["name"].as_str().unwrap_or("").to_string(),
                        peer_urls: urls,
                        is_learner: v["isLearner"].as_bool().unwrap_or(false),
                    });
                }
            }
            _ => {}
        }
    }
}

fn be_u64(v: &[u8]) -> Option<u64> {
    v.get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

/// The main revision of an mvcc revision key (8 bytes big-endian, then `_` and the sub revision).
fn main_revision(k: &[u8]) -> Option<i64> {
    be_u64(k).map(|m| m as i64)
}

/// The first length-delimited field `field` of a protobuf message (mvccpb.KeyValue.key is 1).
fn proto_bytes_field(mut msg: &[u8], field: u64) -> Option<&[u8]> {
    while !msg.is_empty() {
        let (tag, rest) = varint(msg)?;
        msg = rest;
        match tag & 7 {
            0 => msg = varint(msg)?.1,
            1 => msg = msg.get(8..)?,
            2 => {
                let (len, rest) = varint(msg)?;
                let len = usize::try_from(len).ok()?;
                let data = rest.get(..len)?;
                if tag >> 3 == field {
                    return Some(data);
                }
                msg = &rest[len..];
            }
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    None
}

fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_digests_equal_two_plain_ones_however_the_bytes_arrive() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
        for split in [1usize, 7, 31, 32, 33, 100, 4999, 5000] {
            let mut d = DigestWriter::default();
            for chunk in data.chunks(split) {
                d.update(chunk);
            }
            let got = d.finish();
            assert_eq!(got.whole.as_slice(), Sha256::digest(&data).as_slice());
            assert_eq!(
                got.body.as_slice(),
                Sha256::digest(&data[..data.len() - 32]).as_slice()
            );
            assert_eq!(got.tail, &data[data.len() - 32..]);
        }
        let mut short = DigestWriter::default();
        short.update(b"abc");
        let s = short.finish();
        assert_eq!(s.whole.as_slice(), Sha256::digest(b"abc").as_slice());
        assert_eq!(s.tail, b"abc");
    }

    #[test]
    fn reads_the_key_field_of_a_keyvalue() {
        // KeyValue{key: "a/b", create_revision: 5, value: "x"}
        let msg = [0x0a, 3, b'a', b'/', b'b', 0x10, 5, 0x2a, 1, b'x'];
        assert_eq!(proto_bytes_field(&msg, 1), Some(&b"a/b"[..]));
        assert_eq!(proto_bytes_field(&msg, 5), Some(&b"x"[..]));
        assert_eq!(proto_bytes_field(&[0x0a, 9, 1], 1), None);
    }
}
