//! A read-only bbolt reader that checks what bbolt's own consistency check checks: a valid
//! meta page (the newer valid one wins), every page in bounds and reached once, page types as
//! expected, keys in order, and the freelist disjoint from the tree.
//!
//! Pages are read one at a time with positioned reads (no mmap, no whole-file buffer), so
//! memory is a bitmap of pages plus one root-to-leaf path, whatever the file's size.
//! Fields are little-endian: bbolt writes host order and every platform etcd ships on is LE.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Positioned reads: a file on disk, or bytes in memory (tests, the fuzzer).
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
const BUCKET_LEAF_FLAG: u32 = 0x01;
/// Where bbolt records "the freelist is not stored" (etcd sets NoFreelistSync).
const NO_FREELIST: u64 = u64::MAX;
/// Deeper than any real tree; a cycle through inline pages cannot recurse past it.
const MAX_DEPTH: usize = 64;

/// The current meta page.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub page_size: u32,
    pub root: u64,
    pub freelist: u64,
    /// High-water mark: pages in use are below it.
    pub pgid: u64,
    pub txid: u64,
}

/// Everything wrong with a file, with the page it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BboltError {
    #[error("not a bbolt database: {0}")]
    NotBbolt(String),
    #[error("the file ends at byte {len}, but page {page} needs bytes up to {needed}")]
    Truncated { page: u64, len: u64, needed: u64 },
    #[error("page {page}: {why}")]
    Corrupt { page: u64, why: String },
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// One entry of a bucket, in key order, as bbolt's `ForEach` yields it.
pub enum Entry<'a> {
    Pair {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// A nested bucket: its name and header (bbolt's ForEach gives it with a nil value).
    Bucket {
        name: &'a [u8],
        header: &'a [u8],
        /// The page holding the entry, for errors inside an inline bucket.
        page: u64,
    },
}

pub struct Db<'r> {
    file: &'r dyn ReadAt,
    len: u64,
    pub meta: Meta,
    /// Pages reached so far, to find pages reached twice.
    seen: Vec<u64>,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn parse_meta(page: &[u8]) -> Result<Meta, String> {
    if page.len() < HEADER + 64 {
        return Err("too short for a meta page".into());
    }
    if u16_at(page, 8) & META == 0 {
        return Err(format!("type {:#x}, not a meta page", u16_at(page, 8)));
    }
    let m = &page[HEADER..HEADER + 64];
    if u32_at(m, 0) != MAGIC {
        return Err("no bbolt magic".into());
    }
    if u32_at(m, 4) != VERSION {
        return Err(format!("version {}, expected {VERSION}", u32_at(m, 4)));
    }
    if fnv1a64(&m[..56]) != u64_at(m, 56) {
        return Err("checksum mismatch".into());
    }
    let page_size = u32_at(m, 8);
    if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("page size {page_size} is not possible"));
    }
    Ok(Meta {
        page_size,
        root: u64_at(m, 16),
        freelist: u64_at(m, 32),
        pgid: u64_at(m, 40),
        txid: u64_at(m, 48),
    })
}

/// The current meta page of the first `len` bytes of `file`: the newer of the two valid ones.
pub fn read_meta(file: &dyn ReadAt, len: u64) -> Result<Meta, BboltError> {
    let mut first = vec![0u8; 4096.min(len as usize)];
    file.read_exact_at(&mut first, 0)
        .map_err(|e| BboltError::Io(e.to_string()))?;
    let m0 = parse_meta(&first);
    // Page 1 is one page further; if page 0 is damaged its page size is unknown: try them.
    let sizes: Vec<u64> = match &m0 {
        Ok(m) => vec![u64::from(m.page_size)],
        Err(_) => vec![4096, 8192, 16384, 65536, 1024, 2048, 512],
    };
    let mut m1 = Err("meta page 1 is beyond the end of the file".to_string());
    for ps in sizes {
        if ps + HEADER as u64 + 64 > len {
            continue;
        }
        let mut buf = vec![0u8; HEADER + 64];
        file.read_exact_at(&mut buf, ps)
            .map_err(|e| BboltError::Io(e.to_string()))?;
        m1 = parse_meta(&buf).map_err(|e| format!("meta page 1: {e}"));
        if let Ok(m) = &m1
            && u64::from(m.page_size) != ps
        {
            m1 = Err(format!("meta page 1 says page size {}", m.page_size));
        }
        if m1.is_ok() {
            break;
        }
    }
    match (m0, m1) {
        (Ok(a), Ok(b)) => {
            if b.txid > a.txid {
                Ok(b)
            } else {
                Ok(a)
            }
        }
        (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok(a),
        (Err(a), Err(b)) => Err(BboltError::NotBbolt(format!("meta page 0: {a}; {b}"))),
    }
}

impl<'r> Db<'r> {
    /// Opens `len` bytes of `file` (a snapshot's trailer excluded) and picks the meta page.
    pub fn open(file: &'r dyn ReadAt, len: u64) -> Result<Db<'r>, BboltError> {
        let meta = read_meta(file, len)?;
        let ps = u64::from(meta.page_size);
        let needed = meta.pgid.saturating_mul(ps);
        if meta.pgid < 2 || needed > len {
            return Err(BboltError::Truncated {
                page: meta.pgid.saturating_sub(1),
                len,
                needed,
            });
        }
        let words = meta.pgid.div_ceil(64) as usize;
        let mut db = Db {
            file,
            len,
            meta,
            seen: vec![0; words],
        };
        db.mark(0, 0, META)?;
        db.mark(1, 0, META)?;
        Ok(db)
    }

    pub fn page_size(&self) -> u64 {
        u64::from(self.meta.page_size)
    }

    /// Records pages `id..=id+overflow` as reached, refusing pages out of bounds or reached twice.
    fn mark(&mut self, id: u64, overflow: u32, kind: u16) -> Result<(), BboltError> {
        let last = id.saturating_add(u64::from(overflow));
        if last >= self.meta.pgid {
            return Err(BboltError::Corrupt {
                page: id,
                why: format!(
                    "out of bounds: the high-water mark is {} (type {kind:#x})",
                    self.meta.pgid
                ),
            });
        }
        for p in id..=last {
            let (w, b) = ((p / 64) as usize, p % 64);
            if self.seen[w] & (1 << b) != 0 {
                return Err(BboltError::Corrupt {
                    page: p,
                    why: "reached twice (multiple references)".into(),
                });
            }
            self.seen[w] |= 1 << b;
        }
        Ok(())
    }

    /// Reads a whole page (with its overflow) after checking its header.
    fn read_page(&mut self, id: u64, expect: &[u16]) -> Result<Vec<u8>, BboltError> {
        let ps = self.page_size();
        if id >= self.meta.pgid {
            return Err(BboltError::Corrupt {
                page: id,
                why: format!("out of bounds: the high-water mark is {}", self.meta.pgid),
            });
        }
        let mut head = [0u8; HEADER];
        self.file
            .read_exact_at(&mut head, id * ps)
            .map_err(|e| BboltError::Io(e.to_string()))?;
        let (pid, flags, overflow) = (u64_at(&head, 0), u16_at(&head, 8), u32_at(&head, 12));
        if pid != id {
            return Err(BboltError::Corrupt {
                page: id,
                why: format!("its header says it is page {pid}"),
            });
        }
        if !expect.contains(&flags) {
            return Err(BboltError::Corrupt {
                page: id,
                why: format!("invalid type {flags:#x}, expected {}", kinds(expect)),
            });
        }
        self.mark(id, overflow, flags)?;
        let size = (u64::from(overflow) + 1) * ps;
        if id * ps + size > self.len {
            return Err(BboltError::Truncated {
                page: id,
                len: self.len,
                needed: id * ps + size,
            });
        }
        let mut buf = vec![0u8; size as usize];
        self.file
            .read_exact_at(&mut buf, id * ps)
            .map_err(|e| BboltError::Io(e.to_string()))?;
        Ok(buf)
    }

    /// Walks the freelist (when stored) and checks its pages are in bounds.
    pub fn check_freelist(&mut self) -> Result<Vec<u64>, BboltError> {
        if self.meta.freelist == NO_FREELIST {
            return Ok(Vec::new());
        }
        let page = self.read_page(self.meta.freelist, &[FREELIST])?;
        let mut count = u64::from(u16_at(&page, 10));
        let mut at = HEADER;
        if count == 0xFFFF {
            count = u64_at(&page, HEADER);
            at += 8;
        }
        let end = (at as u64).saturating_add(count.saturating_mul(8));
        if end > page.len() as u64 {
            return Err(BboltError::Corrupt {
                page: self.meta.freelist,
                why: format!("freelist of {count} ids does not fit its page"),
            });
        }
        let mut ids = Vec::with_capacity(count as usize);
        for k in 0..count as usize {
            let id = u64_at(&page, at + 8 * k);
            if id < 2 || id >= self.meta.pgid {
                return Err(BboltError::Corrupt {
                    page: self.meta.freelist,
                    why: format!("lists page {id}, outside 2..{}", self.meta.pgid),
                });
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// After the walk: with a stored freelist every page is either reached or free, never both.
    pub fn check_coverage(&self, free: &[u64]) -> Result<(), BboltError> {
        if self.meta.freelist == NO_FREELIST {
            return Ok(());
        }
        let mut is_free = vec![0u64; self.seen.len()];
        for &id in free {
            let (w, b) = ((id / 64) as usize, id % 64);
            if self.seen[w] & (1 << b) != 0 {
                return Err(BboltError::Corrupt {
                    page: id,
                    why: "reachable and freed".into(),
                });
            }
            is_free[w] |= 1 << b;
        }
        for id in 2..self.meta.pgid {
            let (w, b) = ((id / 64) as usize, id % 64);
            if (self.seen[w] | is_free[w]) & (1 << b) == 0 {
                return Err(BboltError::Corrupt {
                    page: id,
                    why: "unreachable and not freed".into(),
                });
            }
        }
        Ok(())
    }

    /// Visits every entry of the bucket rooted at `root` in key order (top level: the meta's root).
    pub fn for_each(
        &mut self,
        root: Root,
        f: &mut dyn FnMut(&mut Db<'r>, Entry<'_>) -> Result<(), BboltError>,
    ) -> Result<(), BboltError> {
        let mut last: Option<Vec<u8>> = None;
        match root {
            Root::Page(id) => self.walk(id, 0, &mut last, None, f),
            Root::Inline { page, parent } => self.leaf(&page, parent, &mut last, f),
        }
    }

    fn walk(
        &mut self,
        id: u64,
        depth: usize,
        last: &mut Option<Vec<u8>>,
        lower: Option<&[u8]>,
        f: &mut dyn FnMut(&mut Db<'r>, Entry<'_>) -> Result<(), BboltError>,
    ) -> Result<(), BboltError> {
        if depth > MAX_DEPTH {
            return Err(BboltError::Corrupt {
                page: id,
                why: "the tree is deeper than any real bbolt tree".into(),
            });
        }
        let page = self.read_page(id, &[BRANCH, LEAF])?;
        let count = usize::from(u16_at(&page, 10));
        if u16_at(&page, 8) == LEAF {
            if let (Some(lo), Some(first)) = (lower, first_key(&page, count, id)?)
                && first < lo
            {
                return Err(BboltError::Corrupt {
                    page: id,
                    why: "its first key sorts before its parent's key".into(),
                });
            }
            return self.leaf(&page, id, last, f);
        }
        if count == 0 {
            return Err(BboltError::Corrupt {
                page: id,
                why: "empty branch page".into(),
            });
        }
        let mut children = Vec::with_capacity(count);
        let mut prev: Option<&[u8]> = None;
        for k in 0..count {
            let e = HEADER + k * ELEMENT;
            let (pos, ksize, child) = branch_element(&page, e, id)?;
            let key = slice(&page, e + pos, ksize, id)?;
            if let Some(p) = prev
                && key <= p
            {
                return Err(BboltError::Corrupt {
                    page: id,
                    why: format!("branch keys out of order at element {k}"),
                });
            }
            prev = Some(key);
            children.push((child, key.to_vec()));
        }
        drop(page);
        for (child, key) in children {
            self.walk(child, depth + 1, last, Some(&key), f)?;
        }
        Ok(())
    }

    fn leaf(
        &mut self,
        page: &[u8],
        id: u64,
        last: &mut Option<Vec<u8>>,
        f: &mut dyn FnMut(&mut Db<'r>, Entry<'_>) -> Result<(), BboltError>,
    ) -> Result<(), BboltError> {
        if page.len() < HEADER {
            return Err(BboltError::Corrupt {
                page: id,
                why: "inline bucket too short for a page header".into(),
            });
        }
        let flags = u16_at(page, 8);
        if flags != LEAF {
            return Err(BboltError::Corrupt {
                page: id,
                why: format!("invalid type {flags:#x}, expected leaf"),
            });
        }
        let count = usize::from(u16_at(page, 10));
        for k in 0..count {
            let e = HEADER + k * ELEMENT;
            if e + ELEMENT > page.len() {
                return Err(BboltError::Corrupt {
                    page: id,
                    why: format!("element {k} lies outside the page"),
                });
            }
            let lflags = u32_at(page, e);
            let pos = u32_at(page, e + 4) as usize;
            let ksize = u32_at(page, e + 8) as usize;
            let vsize = u32_at(page, e + 12) as usize;
            let key = slice(page, e + pos, ksize, id)?;
            let value = slice(page, e + pos + ksize, vsize, id)?;
            if let Some(p) = last.as_deref()
                && key <= p
            {
                return Err(BboltError::Corrupt {
                    page: id,
                    why: format!("keys out of order at element {k}"),
                });
            }
            *last = Some(key.to_vec());
            if lflags & BUCKET_LEAF_FLAG != 0 {
                if value.len() < BUCKET_HEADER {
                    return Err(BboltError::Corrupt {
                        page: id,
                        why: format!(
                            "bucket {:?} has a short header",
                            String::from_utf8_lossy(key)
                        ),
                    });
                }
                f(
                    self,
                    Entry::Bucket {
                        name: key,
                        header: value,
                        page: id,
                    },
                )?;
            } else {
                f(self, Entry::Pair { key, value })?;
            }
        }
        Ok(())
    }
}

/// Where a bucket's entries live.
pub enum Root {
    Page(u64),
    /// An inline bucket: its single leaf page travels in the value on page `parent`.
    Inline {
        page: Vec<u8>,
        parent: u64,
    },
}

/// The root of a nested bucket from its header (the value of a bucket entry on `page`).
pub fn bucket_root(header: &[u8], page: u64) -> Root {
    match u64_at(header, 0) {
        0 => Root::Inline {
            page: header[BUCKET_HEADER..].to_vec(),
            parent: page,
        },
        root => Root::Page(root),
    }
}

/// A branch element: key position (relative to the element), key size, child page.
fn branch_element(page: &[u8], e: usize, id: u64) -> Result<(usize, usize, u64), BboltError> {
    if e + ELEMENT > page.len() {
        return Err(BboltError::Corrupt {
            page: id,
            why: "an element lies outside the page".into(),
        });
    }
    Ok((
        u32_at(page, e) as usize,
        u32_at(page, e + 4) as usize,
        u64_at(page, e + 8),
    ))
}

fn first_key(page: &[u8], count: usize, id: u64) -> Result<Option<&[u8]>, BboltError> {
    if count == 0 {
        return Ok(None);
    }
    let e = HEADER;
    if e + ELEMENT > page.len() {
        return Err(BboltError::Corrupt {
            page: id,
            why: "an element lies outside the page".into(),
        });
    }
    let pos = u32_at(page, e + 4) as usize;
    let ksize = u32_at(page, e + 8) as usize;
    slice(page, e + pos, ksize, id).map(Some)
}

fn slice(page: &[u8], start: usize, len: usize, id: u64) -> Result<&[u8], BboltError> {
    start
        .checked_add(len)
        .and_then(|end| page.get(start..end))
        .ok_or_else(|| BboltError::Corrupt {
            page: id,
            why: format!("an element points outside the page ({len} bytes at offset {start})"),
        })
}

fn kinds(expect: &[u16]) -> String {
    expect
        .iter()
        .map(|k| match *k {
            BRANCH => "branch",
            LEAF => "leaf",
            META => "meta",
            FREELIST => "freelist",
            _ => "?",
        })
        .collect::<Vec<_>>()
        .join(" or ")
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
    fn reads_past_the_end_are_errors_not_panics() {
        let bytes: &[u8] = &[0u8; 100];
        let mut buf = [0u8; 64];
        assert!(ReadAt::read_exact_at(&bytes, &mut buf, 50).is_err());
        assert!(ReadAt::read_exact_at(&bytes, &mut buf, u64::MAX).is_err());
        assert!(Db::open(&bytes, 100).is_err());
    }
}
