//! Snapshot save over Maintenance.Snapshot: streamed to `<file>.part` (written back to the
//! disk as it arrives), fsynced, renamed, `<file>.sha256` written in sha256sum format, then
//! checked by the native reader before success is declared. Memory holds at most about
//! 17 MiB of the stream, whatever the snapshot's size: 1 MiB of buffers on their way to the
//! disk and what etcd may send ahead within the client's 16 MiB HTTP/2 window.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::Client;

use crate::snapshot::status::{DigestWriter, Digests, Status, Trailer, status_with};

/// A saved, verified snapshot.
pub struct Saved {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub took: Duration,
    pub status: Status,
}

pub async fn save(client: &mut Client, dest: &Path) -> Result<Saved, String> {
    let started = Instant::now();
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let result = stream_to(client, &part).await;
    let (file, bytes, digests) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    // etcdctl never checks what it saved; this does, before anyone relies on the file. The
    // digests were taken on the way in, so only the bbolt walk reads the file again, from the
    // page cache, while the same pages go to the disk: the check costs no time of its own.
    let sync = tokio::task::spawn_blocking(move || file.sync_all());
    let p = part.clone();
    let check = tokio::task::spawn_blocking(move || status_with(&p, digests));
    let (synced, checked) = tokio::join!(sync, check);
    let failed = |e: String| {
        let _ = std::fs::remove_file(&part);
        Err(e)
    };
    match synced {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return failed(format!("cannot fsync {}: {e}", part.display())),
        Err(e) => return failed(format!("fsync of {}: {e}", part.display())),
    }
    let st = match checked {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => return failed(e.to_string()),
        Err(e) => return failed(format!("verifying {}: {e}", part.display())),
    };
    if st.sha256 != Trailer::Ok {
        return failed(format!(
            "{}: the saved stream's SHA-256 trailer is {:?}: the snapshot is not usable",
            dest.display(),
            st.sha256
        ));
    }
    let sha256 = st.file_sha256.clone();
    std::fs::rename(&part, dest).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            part.display(),
            dest.display()
        )
    })?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sidecar = PathBuf::from(format!("{}.sha256", dest.display()));
    write_private(&sidecar, format!("{sha256}  {name}\n").as_bytes())?;
    Ok(Saved {
        path: dest.to_path_buf(),
        bytes,
        sha256,
        took: started.elapsed(),
        status: st,
    })
}

/// Streams the snapshot into `part`; returns the file (written, not yet fsynced), its size
/// and digests.
///
/// The stream's messages (32 KiB each from etcd) are gathered into 128 KiB buffers that a
/// thread of its own hashes and writes while this task goes on receiving. On a small machine
/// etcd, the SSH forward and this process share the cores; hashing in line with the
/// receiving held the stream up (1.3 GB on 2 cores: 4.9 s in line, 4.75 s handed off,
/// medians of six; `cargo bench --bench snapshot`).
async fn stream_to(
    client: &mut Client,
    part: &Path,
) -> Result<(std::fs::File, u64, Digests), String> {
    if let Some(dir) = part.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    let mut stream = client
        .snapshot()
        .await
        .map_err(|e| format!("cannot start the snapshot stream: {e}"))?;
    // Async on this side, blocking on the writer's: a plan's steps share this runtime.
    let (full_tx, full_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(BUFFERS);
    let (empty_tx, mut empty_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    for _ in 0..BUFFERS {
        let _ = empty_tx.send(Vec::with_capacity(BUFFER));
    }
    let name = part.display().to_string();
    let writer = tokio::task::spawn_blocking(move || write_out(file, &name, full_rx, &empty_tx));
    let mut received = 0u64;
    let mut buf = Vec::with_capacity(BUFFER);
    let broke = loop {
        let msg = match stream.message().await {
            Ok(Some(msg)) => msg,
            Ok(None) => break None,
            Err(e) => {
                break Some(format!(
                    "the snapshot stream broke after {received} bytes: {e}"
                ));
            }
        };
        let blob = msg.blob();
        received += blob.len() as u64;
        buf.extend_from_slice(blob);
        if buf.len() >= BUFFER {
            // The writer gives each buffer back once written; it stops taking them only when
            // it failed, and then says why when joined.
            let next = empty_rx.recv().await.unwrap_or_default();
            if full_tx
                .send(std::mem::replace(&mut buf, next))
                .await
                .is_err()
            {
                break None;
            }
        }
    };
    if !buf.is_empty() {
        let _ = full_tx.send(buf).await;
    }
    drop(full_tx);
    let written = writer
        .await
        .map_err(|e| format!("writing {} stopped unexpectedly: {e}", part.display()))??;
    if let Some(e) = broke {
        return Err(e);
    }
    if written.1 == 0 {
        return Err("etcd sent an empty snapshot".into());
    }
    Ok(written)
}

/// Buffers between the stream and the writer, and the size of each.
const BUFFERS: usize = 8;
const BUFFER: usize = 128 << 10;

/// The writer's side of `stream_to`: hashes and writes each buffer, starting its writeback to
/// the disk as it goes, and hands the buffer back.
fn write_out(
    mut file: std::fs::File,
    name: &str,
    mut full: tokio::sync::mpsc::Receiver<Vec<u8>>,
    empty: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) -> Result<(std::fs::File, u64, Digests), String> {
    let mut h = DigestWriter::default();
    let (mut bytes, mut flushed) = (0u64, 0u64);
    while let Some(mut buf) = full.blocking_recv() {
        h.update(&buf);
        file.write_all(&buf)
            .map_err(|e| format!("cannot write {name}: {e}"))?;
        bytes += buf.len() as u64;
        if bytes - flushed >= WRITEBACK_EVERY {
            start_writeback(&file, flushed, bytes - flushed);
            flushed = bytes;
        }
        buf.clear();
        let _ = empty.send(buf);
    }
    Ok((file, bytes, h.finish()))
}

/// How much of a snapshot is written before its writeback to the disk is started.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Starts writing `len` bytes at `offset` of `file` to the disk, without waiting for them.
///
/// Without it the whole snapshot sits dirty in the page cache until the final fsync (the
/// kernel's own writeback starts at 10% of memory), which then writes a gigabyte while
/// nothing else happens: about a second of a six-second save. Started as the stream goes,
/// the disk works while the network does. Best effort: fsync still decides durability.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for as
    // long as `file` is borrowed. An error (e.g. a filesystem without it) changes nothing.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn write_private(path: &Path, content: &[u8]) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(content)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
