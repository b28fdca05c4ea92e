//! Snapshots in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, ...), natively: where
//! (`S3Url`), with which settings (the usual AWS environment and profile files, the plan's
//! encryption choice), and the few things runbook does there — upload and read back, fetch
//! to a private file checked against its `.sha256`, list, delete.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// `s3://bucket/prefix`: a bucket and the "directory" of keys under it (no slashes at the ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// Reads `s3://bucket[/prefix]`; `None` when `s` is not an s3 URL at all.
    pub fn parse(s: &str) -> Option<Result<S3Url, String>> {
        let rest = s.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        Some(S3Url::new(bucket, prefix.trim_matches('/')).map_err(|e| format!("{s:?}: {e}")))
    }

    fn new(bucket: &str, prefix: &str) -> Result<S3Url, String> {
        // The bucket naming rules S3 enforces, so a typo fails here and not at upload time.
        let ok_chars = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if bucket.is_empty() {
            return Err("names no bucket".into());
        }
        if !(3..=63).contains(&bucket.len())
            || !ok_chars
            || !ends(bucket.bytes().next())
            || !ends(bucket.bytes().last())
        {
            return Err(format!(
                "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
            ));
        }
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!(
                "the key prefix {prefix:?} has an empty, . or .. part"
            ));
        }
        if prefix.chars().any(char::is_control) {
            return Err("the key prefix contains a control character".into());
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// `s3://bucket/key` of a single object: split into its folder and its name.
    pub fn object(s: &str) -> Option<Result<(S3Url, String), String>> {
        Some(
            S3Url::parse(s)?.and_then(|u| match u.prefix.rsplit_once('/') {
                Some((dir, name)) => Ok((S3Url::new(&u.bucket, dir)?, name.to_string())),
                None if !u.prefix.is_empty() => Ok((S3Url::new(&u.bucket, "")?, u.prefix.clone())),
                None => Err(format!("{s:?} names a bucket, not an object")),
            }),
        )
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Server-side encryption asked for by the plan; `None` leaves the bucket's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3 (`AES256`).
    S3,
    /// SSE-KMS with a key (else the account's default `aws/s3` key).
    Kms(Option<String>),
    /// Dual-layer SSE-KMS.
    DsseKms(Option<String>),
}

impl Sse {
    /// `AES256`, `aws:kms` or `aws:kms:dsse`, as S3's header spells them.
    pub fn parse(kind: &str, key: Option<String>) -> Result<Sse, String> {
        match (kind, key) {
            ("AES256", None) => Ok(Sse::S3),
            ("AES256", Some(_)) => Err("AES256 (SSE-S3) takes no KMS key".into()),
            ("aws:kms", k) => Ok(Sse::Kms(k)),
            ("aws:kms:dsse", k) => Ok(Sse::DsseKms(k)),
            (other, _) => Err(format!(
                "{other:?} is not a server-side encryption (AES256, aws:kms or aws:kms:dsse)"
            )),
        }
    }

    /// The header value and key, for the plan text.
    pub fn describe(&self) -> String {
        match self.header() {
            (kind, Some(key)) => format!("{kind}, key {key}"),
            (kind, None) => kind.to_string(),
        }
    }

    fn header(&self) -> (&'static str, Option<&str>) {
        match self {
            Sse::S3 => ("AES256", None),
            Sse::Kms(k) => ("aws:kms", k.as_deref()),
            Sse::DsseKms(k) => ("aws:kms:dsse", k.as_deref()),
        }
    }
}

/// One object under a prefix.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// A bucket prefix, connected with the settings of this machine.
pub struct Bucket {
    store: AmazonS3,
    pub url: S3Url,
}

/// Uploads are sent in parts of this size (S3's minimum is 5 MiB), so memory stays bounded
/// by a few parts whatever the snapshot's size.
const PART: usize = 16 << 20;

impl Bucket {
    /// Settings, most specific first: `AWS_*` variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, ...), then the profile (`AWS_PROFILE`, else `default`) in
    /// `~/.aws/credentials` and `~/.aws/config`; with neither, the instance's role.
    pub fn open(url: &S3Url, sse: Option<&Sse>) -> Result<Bucket, String> {
        crate::install_crypto();
        let profile = Profile::load()?;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            });
        let unset = |b: &AmazonS3Builder, k: AmazonS3ConfigKey| {
            b.get_config_value(&k).is_none_or(|v| v.is_empty())
        };
        if unset(&b, AmazonS3ConfigKey::AccessKeyId) {
            for (key, name) in [
                (AmazonS3ConfigKey::AccessKeyId, "aws_access_key_id"),
                (AmazonS3ConfigKey::SecretAccessKey, "aws_secret_access_key"),
                (AmazonS3ConfigKey::Token, "aws_session_token"),
            ] {
                if let Some(v) = profile.get(name) {
                    b = b.with_config(key, v);
                }
            }
        }
        if unset(&b, AmazonS3ConfigKey::Region) {
            let region = std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .or_else(|| profile.get("region").map(str::to_string))
                .unwrap_or_else(|| "us-east-1".into());
            b = b.with_region(region);
        }
        if unset(&b, AmazonS3ConfigKey::Endpoint)
            && let Some(e) = profile
                .get("s3.endpoint_url")
                .or(profile.get("endpoint_url"))
        {
            b = b.with_endpoint(e);
        }
        // An endpoint the operator wrote as http:// is meant (a MinIO on a private network).
        if b.get_config_value(&AmazonS3ConfigKey::Endpoint)
            .is_some_and(|e| e.starts_with("http://"))
        {
            b = b.with_allow_http(true);
        }
        // Path-style requests are the default (every S3-compatible server takes them);
        // the profile's `s3 = addressing_style = virtual` asks for bucket.host.
        if profile.get("s3.addressing_style") == Some("virtual") {
            b = b.with_virtual_hosted_style_request(true);
        }
        if let Some(sse) = sse {
            let (kind, key) = sse.header();
            // The encryption keys' type is private to object_store: named by their strings.
            let config = |name: &str| name.parse::<AmazonS3ConfigKey>().map_err(|e| e.to_string());
            b = b.with_config(config("aws_server_side_encryption")?, kind);
            if let Some(k) = key {
                b = b.with_config(config("aws_sse_kms_key_id")?, k);
            }
        }
        let store = b
            .build()
            .map_err(|e| format!("S3 settings for {url}: {e}"))?;
        Ok(Bucket {
            store,
            url: url.clone(),
        })
    }

    fn at(&self, name: &str) -> Key {
        Key::from(self.url.key(name))
    }

    fn where_(&self, name: &str) -> String {
        format!("s3://{}/{}", self.url.bucket, self.url.key(name))
    }

    /// Streams a local file to `name`, in parts for large files; returns its size.
    pub async fn upload(&self, local: &Path, name: &str) -> Result<u64, String> {
        let fail = |e: &dyn fmt::Display| {
            format!(
                "uploading {} to {}: {e}",
                local.display(),
                self.where_(name)
            )
        };
        let mut f = tokio::fs::File::open(local).await.map_err(|e| fail(&e))?;
        let size = f.metadata().await.map_err(|e| fail(&e))?.len();
        if size < PART as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            tokio::io::AsyncReadExt::read_to_end(&mut f, &mut buf)
                .await
                .map_err(|e| fail(&e))?;
            self.store
                .put(&self.at(name), PutPayload::from(buf))
                .await
                .map_err(|e| fail(&e))?;
            return Ok(size);
        }
        let upload = self
            .store
            .put_multipart(&self.at(name))
            .await
            .map_err(|e| fail(&e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf)
                .await
                .map_err(|e| fail(&e))?;
            if n == 0 {
                break;
            }
            // At most two parts in flight: bounded memory, and the link stays busy.
            w.wait_for_capacity(2).await.map_err(|e| fail(&e))?;
            w.write(&buf[..n]);
        }
        w.finish().await.map_err(|e| fail(&e))?;
        Ok(size)
    }

    /// The sha256 of what the object holds now, read back in full.
    pub async fn sha256(&self, name: &str) -> Result<String, String> {
        self.read(name, None).await
    }

    /// Writes the object to `dest` (created 0600, must not exist) and returns its sha256.
    pub async fn download(&self, name: &str, dest: &Path) -> Result<String, String> {
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true).mode(0o600);
        let f = opts
            .open(dest)
            .await
            .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        self.read(name, Some((f, dest))).await
    }

    async fn read(
        &self,
        name: &str,
        mut to: Option<(tokio::fs::File, &Path)>,
    ) -> Result<String, String> {
        let fail = |e: &dyn fmt::Display| format!("reading {}: {e}", self.where_(name));
        let mut body = self
            .store
            .get(&self.at(name))
            .await
            .map_err(|e| fail(&e))?
            .into_stream();
        let mut h = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fail(&e))?;
            h.update(&chunk);
            if let Some((f, path)) = &mut to {
                f.write_all(&chunk)
                    .await
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
        }
        if let Some((f, path)) = &mut to {
            f.sync_all()
                .await
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(crate::snapshot::hex(h.finalize().as_slice()))
    }

    /// A small object's text (a `.sha256`), `None` when there is no such object.
    pub async fn text(&self, name: &str) -> Result<Option<String>, String> {
        match self.store.get(&self.at(name)).await {
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", self.where_(name))),
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| format!("reading {}: {e}", self.where_(name)))?;
                Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
        }
    }

    /// Writes a small object.
    pub async fn put_text(&self, name: &str, text: String) -> Result<(), String> {
        self.store
            .put(&self.at(name), PutPayload::from(text.into_bytes()))
            .await
            .map(|_| ())
            .map_err(|e| format!("writing {}: {e}", self.where_(name)))
    }

    /// The objects directly under the prefix (not in deeper "folders"), in no order.
    pub async fn list(&self) -> Result<Vec<Object>, String> {
        let prefix = (!self.url.prefix.is_empty()).then(|| Key::from(self.url.prefix.as_str()));
        let depth = prefix.as_ref().map_or(0, |p| p.parts().count());
        let mut out = Vec::new();
        let mut stream = self.store.list(prefix.as_ref());
        while let Some(m) = stream.next().await {
            let m = m.map_err(|e| format!("listing {}: {e}", self.url))?;
            if m.location.parts().count() != depth + 1 {
                continue;
            }
            let Some(name) = m.location.filename() else {
                continue;
            };
            out.push(Object {
                name: name.to_string(),
                size: m.size,
                modified: m.last_modified.into(),
            });
        }
        Ok(out)
    }

    pub async fn delete(&self, name: &str) -> Result<(), String> {
        match self.store.delete(&self.at(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("deleting {}: {e}", self.where_(name))),
        }
    }

    /// Fetches `name` into `dir` (a private directory) and checks it against the `.sha256`
    /// object beside it, when there is one: a snapshot damaged in storage or on the way is
    /// refused before anything reads it. Returns the file, its sha256 and what was checked.
    pub async fn fetch(&self, name: &str, dir: &Path) -> Result<(PathBuf, String, String), String> {
        let dest = dir.join(name);
        let got = self.download(name, &dest).await?;
        let side = format!("{name}.sha256");
        let checked = match self.text(&side).await? {
            None => format!("sha256 {got} (no {side} beside it to compare)"),
            Some(t) => {
                let want = t
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if want != got {
                    let _ = std::fs::remove_file(&dest);
                    return Err(format!(
                        "{}: its sha256 is {got}, but {side} says {want}: the object is damaged; refusing it",
                        self.where_(name)
                    ));
                }
                format!("sha256 {got} matches {side}")
            }
        };
        Ok((dest, got, checked))
    }
}

/// What the AWS profile files say for one profile: `AWS_PROFILE` (else `default`) from
/// `AWS_SHARED_CREDENTIALS_FILE` (else ~/.aws/credentials) and `AWS_CONFIG_FILE` (else
/// ~/.aws/config). Read by hand: their nested sections (`s3 =` then indented
/// `addressing_style = path`) are not INI, and the full SDK is far too large for four values.
#[derive(Debug, Default)]
struct Profile(HashMap<String, String>);

impl Profile {
    fn load() -> Result<Profile, String> {
        let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let file = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".aws").join(default))
        };
        let mut p = Profile::default();
        // The config file names sections `[profile x]` (and `[default]`); credentials `[x]`.
        let config_section = if name == "default" {
            "default".to_string()
        } else {
            format!("profile {name}")
        };
        for (path, section) in [
            (file("AWS_CONFIG_FILE", "config"), config_section),
            (
                file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
                name.clone(),
            ),
        ] {
            match std::fs::read_to_string(&path) {
                Ok(text) => p.read(&text, &section),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(p)
    }

    /// Takes `section`'s keys; a key with an empty value opens a nested block whose indented
    /// lines are stored as `key.sub`.
    fn read(&mut self, text: &str, section: &str) {
        let mut inside = false;
        let mut nested: Option<String> = None;
        for line in text.lines() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                inside = s.trim() == section;
                nested = None;
                continue;
            }
            let Some((k, v)) = t.split_once('=') else {
                continue;
            };
            if !inside {
                continue;
            }
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            let indented = line.starts_with([' ', '\t']);
            match (&nested, indented) {
                (Some(parent), true) => {
                    self.0.insert(format!("{parent}.{k}"), v);
                }
                _ if v.is_empty() => nested = Some(k),
                _ => {
                    nested = None;
                    self.0.insert(k, v);
                }
            }
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_valid_bucket_and_a_clean_prefix() {
        let u = S3Url::parse("s3://backups/etcd/prod/").unwrap().unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("backups", "etcd/prod")
        );
        assert_eq!(u.key("a.db"), "etcd/prod/a.db");
        assert_eq!(u.to_string(), "s3://backups/etcd/prod");
        assert_eq!(
            S3Url::parse("s3://backups").unwrap().unwrap().key("a.db"),
            "a.db"
        );
        assert!(S3Url::parse("/var/backups").is_none());
        for bad in [
            "s3://",
            "s3:///x",
            "s3://Backups/x",
            "s3://ab/x",
            "s3://b_k/x",
            "s3://bk-/x",
            "s3://backups/a/../b",
        ] {
            assert!(S3Url::parse(bad).unwrap().is_err(), "{bad}");
        }
        let (dir, name) = S3Url::object("s3://backups/etcd/a.db").unwrap().unwrap();
        assert_eq!((dir.prefix.as_str(), name.as_str()), ("etcd", "a.db"));
        let (dir, name) = S3Url::object("s3://backups/a.db").unwrap().unwrap();
        assert_eq!((dir.prefix.as_str(), name.as_str()), ("", "a.db"));
        assert!(S3Url::object("s3://backups").unwrap().is_err());
    }

    #[test]
    fn profiles_read_their_own_section_and_nested_s3_settings() {
        let mut p = Profile::default();
        p.read(
            "[default]\nregion = eu-west-1\n[profile lab]\nregion = us-east-2\ns3 =\n  addressing_style = virtual\n  endpoint_url = http://minio:9000\nendpoint_url = https://x\n[profile other]\nregion = nope\n",
            "profile lab",
        );
        assert_eq!(p.get("region"), Some("us-east-2"));
        assert_eq!(p.get("s3.addressing_style"), Some("virtual"));
        assert_eq!(p.get("s3.endpoint_url"), Some("http://minio:9000"));
        assert_eq!(p.get("endpoint_url"), Some("https://x"));
    }

    #[test]
    fn encryption_is_one_of_the_three_s3_knows() {
        assert_eq!(Sse::parse("AES256", None), Ok(Sse::S3));
        assert_eq!(
            Sse::parse("aws:kms", Some("k".into())),
            Ok(Sse::Kms(Some("k".into())))
        );
        assert!(Sse::parse("AES256", Some("k".into())).is_err());
        assert!(Sse::parse("aes256", None).is_err());
    }
}
