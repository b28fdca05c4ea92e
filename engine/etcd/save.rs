//! Snapshot save over Maintenance.Snapshot: streamed to `<file>.part`, fsynced, renamed,
//! `<file>.sha256` written in sha256sum format, then checked by the native reader before
//! success is declared. Memory holds one message of the stream at a time.

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
    let mut file = std::fs::OpenOptions::new()
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
    let mut h = DigestWriter::default();
    let mut bytes = 0u64;
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|e| format!("the snapshot stream broke after {bytes} bytes: {e}"))?
    {
        let blob = msg.blob();
        h.update(blob);
        file.write_all(blob)
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        bytes += blob.len() as u64;
    }
    if bytes == 0 {
        return Err("etcd sent an empty snapshot".into());
    }
    Ok((file, bytes, h.finish()))
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
