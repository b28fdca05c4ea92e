//! `snapshot status` figures, computed exactly as etcdutl (and etcdctl <= 3.5) compute them,
//! plus what an operator wants to know before restoring: trailer, live keys, consistent
//! index, compaction, the members recorded in the file.
//!
//! HASH is CRC-32C over, for each top-level bucket in byte order, its name then every key and
//! value of it (a nested bucket contributes its name only, as bbolt's ForEach yields it);
//! REVISION is the main revision of the last key of bucket `key`; TOTAL KEYS counts every
//! entry of every top-level bucket; TOTAL SIZE is the high-water mark times the page size.
//!
//! The file's shape is judged from its size and the bbolt meta page: a raw copy of
//! `member/snap/db` is whole pages (bbolt grows the file in steps, so usually more pages than
//! the `pgid` in use); a `snapshot save` file is the pages in use followed by their 32-byte
//! SHA-256. Anything else was cut short or appended to.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::bbolt::{BboltError, Db, Entry, ReadAt, Root, bucket_root, read_meta};
use super::hex;

/// What the trailer says about the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    /// A `snapshot save` file whose SHA-256 trailer matches.
    Ok,
    /// Whole pages and 32 bytes, but the digest does not match: corrupted or truncated.
    Mismatch,
    /// Whole pages, no trailer: a copy of `member/snap/db` (restore needs --skip-hash-check).
    Absent,
    /// Neither shape: the end of the file was cut or added to.
    Damaged(Damage),
}

impl Trailer {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trailer::Ok => "ok",
            Trailer::Mismatch => "mismatch",
            Trailer::Absent => "absent",
            Trailer::Damaged(_) => "damaged",
        }
    }
}

impl std::fmt::Display for Trailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trailer::Damaged(d) => write!(f, "damaged ({d})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// JSON keeps one word per state; `snapshot status` adds the damage in words beside it.
impl Serialize for Trailer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How the end of a file shows it is neither a raw db copy nor a `snapshot save` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// `extra` bytes after the last whole page, other than a 32-byte trailer.
    PartialPage { extra: u64, page_size: u32 },
    /// A whole `snapshot save` file (`saved` bytes, its trailer matching) with `extra` bytes
    /// after its trailer, all zero when `zeros` (padded to whole pages, say).
    AfterTrailer { saved: u64, extra: u64, zeros: bool },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = |n: u64| format!("{n} byte{}", if n == 1 { "" } else { "s" });
        match *self {
            Damage::PartialPage { extra, page_size } => write!(
                f,
                "{} past the last whole page ({page_size}-byte pages): neither a raw db copy (whole pages) nor a `snapshot save` file (whole pages + 32-byte SHA-256); truncated or appended to",
                bytes(extra)
            ),
            Damage::AfterTrailer {
                saved,
                extra,
                zeros,
            } => write!(
                f,
                "{} after the SHA-256 trailer{}: the first {saved} bytes are a `snapshot save` file (its trailer matches), {}",
                bytes(extra),
                if zeros { ", all zero" } else { "" },
                if zeros {
                    "padded with zeros"
                } else {
                    "appended to"
                }
            ),
        }
    }
}

impl Damage {
    /// What the operator can do about it.
    pub fn hint(&self) -> String {
        match self {
            Damage::PartialPage { .. } => {
                "this file cannot be restored as it is; take another snapshot or use an older one"
                    .to_string()
            }
            Damage::AfterTrailer { saved, .. } => format!(
                "the snapshot as saved is the first {saved} bytes: restore from a copy cut to that size (`truncate -s {saved} COPY`) after checking it again"
            ),
        }
    }
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
    /// Live values by how Kubernetes stored them: each encryption provider and key name
    /// (`k8s:enc:<provider>:v1:<key>:`), and `identity` for the rest.
    pub encryption: Vec<KeyUse>,
}

/// How many live values one encryption key (or identity) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUse {
    pub provider: String,
    /// Empty for identity.
    pub key: String,
    pub objects: u64,
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
    let layout = Layout::of(&file, size).map_err(|e| Refusal::Bbolt(e).at(&p))?;
    // Two cores, two jobs: the digest reads the file front to back while the walk reads pages.
    let (digests, figures) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| Digests::of_file(path, layout.used));
        let walked = figures(&file, layout.whole_pages());
        (hashing.join(), walked)
    });
    let digests = digests
        .map_err(|_| io(std::io::Error::other("the digest thread panicked")))?
        .map_err(io)?;
    let mut st = figures.map_err(|e| e.at(&p))?;
    digests.apply(&mut st, layout);
    Ok(st)
}

/// The same check for a file whose digests are already known (computed while it was written),
/// so a freshly saved snapshot is not hashed twice.
pub fn status_with(path: &Path, digests: Digests) -> Result<Status, StatusError> {
    let (file, size, p) = open_nonempty(path)?;
    let layout = Layout::of(&file, size).map_err(|e| Refusal::Bbolt(e).at(&p))?;
    let mut st = figures(&file, layout.whole_pages()).map_err(|e| e.at(&p))?;
    digests.apply(&mut st, layout);
    Ok(st)
}

/// Opens a file that must not be empty: the file, its size, its path for messages.
pub(crate) fn open_nonempty(path: &Path) -> Result<(File, u64, String), StatusError> {
    let p = path.display().to_string();
    let io = |error| StatusError::Io {
        path: p.clone(),
        error,
    };
    // A FIFO or a device is refused before it is opened: opening a FIFO waits for a writer.
    let file = crate::input::open_regular(path).map_err(|e| match e {
        crate::input::InputError::Io(e) => io(e),
        other => io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            other.to_string(),
        )),
    })?;
    let size = file.metadata().map_err(io)?.len();
    if size == 0 {
        return Err(StatusError::Empty { path: p });
    }
    Ok((file, size, p))
}

/// The file's size against its pages, from the bbolt meta page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    size: u64,
    page_size: u32,
    /// The pages in use (meta `pgid` times the page size): where a save file's trailer starts.
    used: u64,
}

impl Layout {
    pub(crate) fn of(src: &dyn ReadAt, size: u64) -> Result<Layout, BboltError> {
        let meta = read_meta(src, size)?;
        Ok(Layout {
            size,
            page_size: meta.page_size,
            used: meta.pgid.saturating_mul(u64::from(meta.page_size)),
        })
    }

    /// Bytes after the last whole page: 0 for a raw copy, 32 (the trailer) for a save file.
    fn partial(&self) -> u64 {
        self.size % u64::from(self.page_size)
    }

    /// What the bbolt walk reads: the whole pages, without a trailer or a partial page.
    pub(crate) fn whole_pages(&self) -> u64 {
        self.size - self.partial()
    }

    /// The trailer's verdict from the digests.
    fn judge(&self, d: &Digests) -> Trailer {
        let partial = self.partial();
        if partial == 32 && d.body.as_slice() == d.tail.as_slice() {
            return Trailer::Ok;
        }
        // A save file with something after its trailer (zero-padding to whole pages makes it
        // look like a raw copy): the 32 bytes right after the pages in use are their digest.
        if let Some(m) = &d.mark
            && m.at == self.used
            && self.size > self.used + 32
            && m.digest.as_slice() == m.next.as_slice()
        {
            return Trailer::Damaged(Damage::AfterTrailer {
                saved: self.used + 32,
                extra: self.size - self.used - 32,
                zeros: m.zeros_after,
            });
        }
        match partial {
            32 => Trailer::Mismatch,
            0 => Trailer::Absent,
            extra => Trailer::Damaged(Damage::PartialPage {
                extra,
                page_size: self.page_size,
            }),
        }
    }
}

/// The digests a status needs: of everything but the last 32 bytes (the body, when there is
/// a trailer), of the whole file, and those last bytes; and, when asked for, of the bytes
/// before a mark (the pages in use) with the 32 bytes after it.
pub struct Digests {
    pub body: [u8; 32],
    pub whole: [u8; 32],
    pub tail: Vec<u8>,
    pub mark: Option<Marked>,
}

/// The digest of the first `at` bytes, the (up to) 32 bytes from there, and whether every
/// byte after those is zero.
pub struct Marked {
    pub at: u64,
    pub digest: [u8; 32],
    pub next: Vec<u8>,
    pub zeros_after: bool,
}

impl Digests {
    fn of_file(path: &Path, mark: u64) -> std::io::Result<Digests> {
        let mut f = crate::input::open_regular(path).map_err(std::io::Error::other)?;
        let mut d = DigestWriter::with_mark(mark);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(d.finish());
            }
            d.update(&buf[..n]);
        }
    }

    fn apply(self, st: &mut Status, layout: Layout) {
        st.sha256 = layout.judge(&self);
        st.file_sha256 = hex(&self.whole);
        st.file_size = layout.size;
    }
}

/// Hashes bytes as they stream by, once: the hasher runs 32 bytes behind, so where the
/// stream ends its state is the body's digest, and the held bytes finish the whole's.
/// Works when the size is not known in advance (a snapshot arriving from etcd).
#[derive(Default)]
pub struct DigestWriter {
    hasher: Sha256,
    held: Vec<u8>,
    /// Bytes given to the hasher, and bytes seen.
    hashed: u64,
    seen: u64,
    mark: Option<u64>,
    at_mark: Option<[u8; 32]>,
    after_mark: Vec<u8>,
    nonzero_after: bool,
}

impl DigestWriter {
    /// Also keeps the digest of the first `mark` bytes and the 32 bytes after them.
    pub fn with_mark(mark: u64) -> DigestWriter {
        DigestWriter {
            mark: Some(mark),
            ..DigestWriter::default()
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        if let Some(m) = self.mark {
            let (start, end) = (self.seen, self.seen + chunk.len() as u64);
            let (from, to) = (m.max(start), m.saturating_add(32).min(end));
            if from < to {
                self.after_mark
                    .extend_from_slice(&chunk[(from - start) as usize..(to - start) as usize]);
            }
            let rest = m.saturating_add(32).max(start);
            if rest < end && chunk[(rest - start) as usize..].iter().any(|&b| b != 0) {
                self.nonzero_after = true;
            }
        }
        self.seen += chunk.len() as u64;
        let total = self.held.len() + chunk.len();
        if total <= 32 {
            self.held.extend_from_slice(chunk);
            return;
        }
        let emit = total - 32;
        let mut held = std::mem::take(&mut self.held);
        if emit <= held.len() {
            self.hash(&held[..emit]);
            held.drain(..emit);
            held.extend_from_slice(chunk);
        } else {
            self.hash(&held);
            let from_chunk = emit - held.len();
            self.hash(&chunk[..from_chunk]);
            held.clear();
            held.extend_from_slice(&chunk[from_chunk..]);
        }
        self.held = held;
    }

    /// Feeds the hasher, keeping its state at the mark on the way.
    fn hash(&mut self, data: &[u8]) {
        let end = self.hashed + data.len() as u64;
        match self.mark {
            Some(m) if self.at_mark.is_none() && (self.hashed..=end).contains(&m) => {
                let k = (m - self.hashed) as usize;
                self.hasher.update(&data[..k]);
                self.at_mark = Some(self.hasher.clone().finalize().into());
                self.hasher.update(&data[k..]);
            }
            _ => self.hasher.update(data),
        }
        self.hashed = end;
    }

    pub fn finish(mut self) -> Digests {
        let body: [u8; 32] = self.hasher.clone().finalize().into();
        let held = std::mem::take(&mut self.held);
        self.hash(&held);
        let mark = match (self.mark, self.at_mark) {
            (Some(at), Some(digest)) => Some(Marked {
                at,
                digest,
                next: self.after_mark,
                zeros_after: !self.nonzero_after,
            }),
            _ => None,
        };
        Digests {
            body,
            whole: self.hasher.finalize().into(),
            tail: held,
            mark,
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
    let layout =
        Layout::of(&bytes, bytes.len() as u64).map_err(|e| Refusal::Bbolt(e).at("<memory>"))?;
    let mut st = figures(&bytes, layout.whole_pages()).map_err(|e| e.at("<memory>"))?;
    let mut d = DigestWriter::with_mark(layout.used);
    d.update(bytes);
    d.finish().apply(&mut st, layout);
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
fn figures(src: &dyn ReadAt, body_len: u64) -> Result<Status, Refusal> {
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

    let encryption = s.encryption();
    Ok(Status {
        sha256: Trailer::Absent,
        hash: format!("{crc:x}"),
        revision: s.revision,
        total_keys: s.total_keys,
        live_keys_36: s.live.values().filter(|(live, _)| *live).count() as u64,
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
        encryption,
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
    /// Keys are walked in revision order, so the last write wins. With it, the encryption
    /// key of its latest value (an index into `keys`).
    live: HashMap<u64, (bool, Option<u16>)>,
    keys: Vec<(String, String)>,
    storage_version: Option<String>,
    consistent_index: Option<u64>,
    term: Option<u64>,
    scheduled: Option<i64>,
    finished: Option<i64>,
    members: Vec<Member>,
    buckets: Vec<(String, u64)>,
}

impl Walk {
    fn key_index(&mut self, provider: &str, key: &str) -> u16 {
        match self
            .keys
            .iter()
            .position(|(p, k)| p == provider && k == key)
        {
            Some(i) => i as u16,
            None => {
                self.keys.push((provider.to_string(), key.to_string()));
                (self.keys.len() - 1) as u16
            }
        }
    }

    /// Live values per encryption key, then identity.
    fn encryption(&self) -> Vec<KeyUse> {
        let mut n = vec![0u64; self.keys.len()];
        let mut plain = 0;
        for (live, enc) in self.live.values() {
            match (live, enc) {
                (true, Some(i)) => n[usize::from(*i)] += 1,
                (true, None) => plain += 1,
                _ => {}
            }
        }
        let mut out: Vec<KeyUse> = self
            .keys
            .iter()
            .zip(n)
            .map(|((p, k), objects)| KeyUse {
                provider: p.clone(),
                key: k.clone(),
                objects,
            })
            .collect();
        out.push(KeyUse {
            provider: "identity".into(),
            key: String::new(),
            objects: plain,
        });
        out
    }

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
                    let enc = proto_bytes_field(value, 5)
                        .and_then(super::contents::encryption_of)
                        .map(|(p, k)| self.key_index(p, k));
                    self.live.insert(digest, (!tombstone, enc));
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
pub(crate) fn main_revision(k: &[u8]) -> Option<i64> {
    be_u64(k).map(|m| m as i64)
}

/// The first length-delimited field `field` of a protobuf message (mvccpb.KeyValue.key is 1).
pub(crate) fn proto_bytes_field(msg: &[u8], field: u64) -> Option<&[u8]> {
    super::wire::bytes_field(msg, u32::try_from(field).ok()?)
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
        // The digest at a mark, the 32 bytes after it and whether the rest is zero.
        let mut padded = data.clone();
        padded.resize(6000, 0);
        for mark in [0u64, 1, 31, 32, 1000, 4967, 4968, 5000] {
            for split in [1usize, 32, 100, 6000] {
                let mut d = DigestWriter::with_mark(mark);
                for chunk in padded.chunks(split) {
                    d.update(chunk);
                }
                let m = d.finish().mark.unwrap();
                let at = mark as usize;
                assert_eq!(
                    m.digest.as_slice(),
                    Sha256::digest(&padded[..at]).as_slice()
                );
                assert_eq!(m.next, &padded[at..at + 32]);
                assert_eq!(m.zeros_after, at + 32 >= 5000, "mark {mark} split {split}");
            }
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
