//! What a snapshot (or a live cluster) holds, key by key, and what differs between two of
//! them, grouped the way Kubernetes stores its objects (`/registry/...`).
//!
//! Memory is bounded by the number of keys, not by value sizes: each live key keeps its name,
//! its revision, a 128-bit digest of its value (XXH3: fast, not cryptographic — a diff informs,
//! the checks that guard a restore use SHA-256), its size and its encryption key (an index).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::bbolt::{Db, Entry, Root, bucket_root};
use super::status::{Layout, StatusError, main_revision, open_nonempty, proto_bytes_field};

/// One live key's latest value, as far as comparing and counting need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object {
    pub mod_revision: i64,
    pub digest: u128,
    pub size: u32,
    /// Index into `Contents::encryption`; `None` for a value stored as it is (identity).
    pub encryption: Option<u16>,
}

/// Every live key of a keyspace at one revision.
#[derive(Debug, Default)]
pub struct Contents {
    pub revision: i64,
    pub keys: BTreeMap<Vec<u8>, Object>,
    /// (provider, key name) of the encrypted values, in the order first seen.
    pub encryption: Vec<(String, String)>,
}

impl Contents {
    /// Records `key`'s value at `revision`, replacing what an older revision said.
    pub fn put(&mut self, key: &[u8], revision: i64, value: &[u8]) {
        let digest = xxhash_rust::xxh3::xxh3_128(value);
        let encryption = encryption_of(value).map(|(p, k)| self.intern(p, k));
        self.keys.insert(
            key.to_vec(),
            Object {
                mod_revision: revision,
                digest,
                size: u32::try_from(value.len()).unwrap_or(u32::MAX),
                encryption,
            },
        );
    }

    fn intern(&mut self, provider: &str, key: &str) -> u16 {
        if let Some(i) = self
            .encryption
            .iter()
            .position(|(p, k)| p == provider && k == key)
        {
            return i as u16;
        }
        self.encryption
            .push((provider.to_string(), key.to_string()));
        (self.encryption.len() - 1) as u16
    }

    /// Reads every live key of a snapshot file (or a raw member/snap/db copy), walking its
    /// revisions in order: the last write of a key wins, a deletion removes it.
    pub fn of_file(path: &Path) -> Result<Contents, StatusError> {
        let mut c = Contents::default();
        walk_revisions(path, &mut |rev, key, value| {
            c.revision = rev;
            match value {
                Some(v) => c.put(key, rev, v),
                None => {
                    c.keys.remove(key);
                }
            }
        })?;
        Ok(c)
    }

    /// Objects per (provider, key name), identity (no prefix) as ("identity", "").
    pub fn encryption_counts(&self) -> Vec<(String, String, u64)> {
        let mut n = vec![0u64; self.encryption.len()];
        let mut plain = 0u64;
        for o in self.keys.values() {
            match o.encryption {
                Some(i) => n[usize::from(i)] += 1,
                None => plain += 1,
            }
        }
        let mut out: Vec<(String, String, u64)> = self
            .encryption
            .iter()
            .zip(n)
            .map(|((p, k), n)| (p.clone(), k.clone(), n))
            .collect();
        if plain > 0 {
            out.push(("identity".into(), String::new(), plain));
        }
        out
    }

    /// The resources whose objects are encrypted with each key, for messages.
    pub fn resources_encrypted_with(&self, index: u16) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (k, o) in &self.keys {
            if o.encryption == Some(index) {
                let r = Resource::of(k).map_or("(outside /registry/)".into(), |r| r.kind());
                *out.entry(r).or_insert(0) += 1;
            }
        }
        out
    }
}

/// What `walk_revisions` calls for each revision: (revision, key, value or None).
pub type Revisions<'f> = dyn FnMut(i64, &[u8], Option<&[u8]>) + 'f;

/// Every revision of a snapshot's keyspace, oldest first: `(revision, key, Some(value))` for
/// a write, `(revision, key, None)` for a deletion. One pass over the file's pages; nothing
/// is kept, so the caller's memory is what it keeps.
pub fn walk_revisions(path: &Path, each: &mut Revisions) -> Result<(), StatusError> {
    let (file, size, p) = open_nonempty(path)?;
    let bolt = |error| StatusError::Bbolt {
        path: p.clone(),
        error,
    };
    let layout = Layout::of(&file, size).map_err(bolt)?;
    let mut db = Db::open(&file, layout.whole_pages()).map_err(bolt)?;
    let mut root = None;
    db.for_each(Root::Page(db.meta.root), &mut |_, e| {
        if let Entry::Bucket {
            name: b"key",
            header,
            page,
        } = e
        {
            root = Some(bucket_root(header, page));
        }
        Ok(())
    })
    .map_err(bolt)?;
    let Some(root) = root else {
        return Ok(());
    };
    db.for_each(root, &mut |_, e| {
        if let Entry::Pair { key, value } = e
            && let (Some(rev), Some(user_key)) = (main_revision(key), proto_bytes_field(value, 1))
        {
            // A revision key is main(8) '_' sub(8), with a trailing 't' for a deletion.
            if key.len() == 18 && key[17] == b't' {
                each(rev, user_key, None);
            } else {
                each(
                    rev,
                    user_key,
                    Some(proto_bytes_field(value, 5).unwrap_or(b"")),
                );
            }
        }
        Ok(())
    })
    .map_err(bolt)
}

/// Live objects per resource (as `kube::select::resource_of` names them) and the revision.
pub fn resource_counts(path: &Path) -> Result<(i64, BTreeMap<String, u64>), StatusError> {
    let mut live: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut revision = 0;
    walk_revisions(path, &mut |rev, key, value| {
        revision = rev;
        if value.is_some() {
            live.insert(key.to_vec());
        } else {
            live.remove(key);
        }
    })?;
    let mut counts = BTreeMap::new();
    for k in &live {
        if let Some(r) = crate::kube::select::resource_of(k) {
            *counts.entry(r).or_insert(0u64) += 1;
        }
    }
    Ok((revision, counts))
}

/// One key's latest value and its revision, if the snapshot holds it.
pub fn latest_value(path: &Path, key: &[u8]) -> Result<Option<(i64, Vec<u8>)>, StatusError> {
    let mut found = None;
    walk_revisions(path, &mut |rev, k, value| {
        if k == key {
            found = value.map(|v| (rev, v.to_vec()));
        }
    })?;
    Ok(found)
}

/// A Kubernetes encryption envelope prefix: `k8s:enc:<provider>:v1:<key name>:` (KMS v2 has
/// no key name in the prefix: its provider name stands for it).
pub fn encryption_of(value: &[u8]) -> Option<(&str, &str)> {
    let rest = value.strip_prefix(b"k8s:enc:")?;
    // provider ':' version ':' key name ':' then the ciphertext (binary).
    let mut fields = rest.splitn(4, |&b| b == b':');
    let provider = std::str::from_utf8(fields.next()?).ok()?;
    let version = fields.next()?;
    let name = std::str::from_utf8(fields.next()?).ok()?;
    fields.next()?;
    let plain = |s: &str| !s.is_empty() && s.len() <= 253 && !s.chars().any(char::is_control);
    (plain(provider) && version.first() == Some(&b'v') && plain(name)).then_some((provider, name))
}

/// Where a key sits in Kubernetes' layout: `/registry/[GROUP/]RESOURCE/[NAMESPACE/]NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Resource {
    /// `deployments`, `widgets.example.com`: plural, with the group when the key names one.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl Resource {
    pub fn of(key: &[u8]) -> Option<Resource> {
        let key = std::str::from_utf8(key).ok()?;
        let parts: Vec<&str> = key.strip_prefix("/registry/")?.split('/').collect();
        // A group segment has a dot (apps, batch and the core group are not in the key).
        let (resource, rest) = match parts.as_slice() {
            [group, resource, rest @ ..] if group.contains('.') => {
                (format!("{resource}.{group}"), rest)
            }
            // Services are kept under `services/specs` (and endpoints under `services/endpoints`).
            ["services", "specs", rest @ ..] => ("services".to_string(), rest),
            ["services", "endpoints", rest @ ..] => ("endpoints".to_string(), rest),
            ["minions", rest @ ..] => ("nodes".to_string(), rest),
            [resource, rest @ ..] => (resource.to_string(), rest),
            [] => return None,
        };
        match rest {
            [name] => Some(Resource {
                resource,
                namespace: None,
                name: name.to_string(),
            }),
            [ns, name] => Some(Resource {
                resource,
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            }),
            // A singleton such as /registry/ranges/serviceips: the resource is its own name.
            [] => Some(Resource {
                name: resource.clone(),
                resource,
                namespace: None,
            }),
            _ => Some(Resource {
                resource,
                namespace: None,
                name: rest.join("/"),
            }),
        }
    }

    pub fn kind(&self) -> String {
        self.resource.clone()
    }
}

/// How one key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// In the newer side only: created since the older.
    Created,
    /// In the older side only: deleted since.
    Deleted,
    /// In both, with another value.
    Changed,
}

/// Counts of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: u64,
    pub deleted: u64,
    pub changed: u64,
    /// Namespaces with at least one difference.
    #[serde(skip)]
    pub namespaces: BTreeSet<String>,
}

impl Counts {
    fn add(&mut self, c: Change, ns: Option<&str>) {
        match c {
            Change::Created => self.created += 1,
            Change::Deleted => self.deleted += 1,
            Change::Changed => self.changed += 1,
        }
        if let Some(ns) = ns {
            self.namespaces.insert(ns.to_string());
        }
    }

    pub fn total(&self) -> u64 {
        self.created + self.deleted + self.changed
    }
}

/// One differing key, for `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct Differs {
    pub change: Change,
    pub key: String,
    #[serde(flatten)]
    pub resource: Option<Resource>,
}

/// What differs between an older and a newer keyspace.
#[derive(Debug, Default, Serialize)]
pub struct Diff {
    pub older_revision: i64,
    pub newer_revision: i64,
    /// Per resource (`deployments`, `widgets.example.com`), in name order.
    pub resources: BTreeMap<String, Counts>,
    /// Keys outside `/registry/`.
    pub outside_registry: Counts,
    pub unchanged: u64,
    pub keys: Vec<Differs>,
}

impl Diff {
    /// Walks both key lists in order once.
    pub fn of(older: &Contents, newer: &Contents) -> Diff {
        let mut d = Diff {
            older_revision: older.revision,
            newer_revision: newer.revision,
            ..Diff::default()
        };
        let mut a = older.keys.iter().peekable();
        let mut b = newer.keys.iter().peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some((k, _)) = a.next() {
                        d.record(k, Change::Deleted);
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some((k, _)) = b.next() {
                        d.record(k, Change::Created);
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some((k, oa)), Some((_, ob))) = (a.next(), b.next()) {
                        if oa.digest == ob.digest {
                            d.unchanged += 1;
                        } else {
                            d.record(k, Change::Changed);
                        }
                    }
                }
            }
        }
        d
    }

    fn record(&mut self, key: &[u8], change: Change) {
        let resource = Resource::of(key);
        match &resource {
            Some(r) => self
                .resources
                .entry(r.kind())
                .or_default()
                .add(change, r.namespace.as_deref()),
            None => self.outside_registry.add(change, None),
        }
        self.keys.push(Differs {
            change,
            key: String::from_utf8_lossy(key).into_owned(),
            resource,
        });
    }

    /// Namespaces touched, across resources.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.resources
            .values()
            .flat_map(|c| c.namespaces.iter().map(String::as_str))
            .collect()
    }

    /// What restoring the older side over the newer does, in one sentence: the newer's new
    /// objects go, its deleted ones come back, its changed ones roll back.
    pub fn restore_sentence(&self) -> String {
        let list = |pick: fn(&Counts) -> u64| -> (u64, String) {
            let mut v: Vec<(u64, &str)> = self
                .resources
                .iter()
                .map(|(r, c)| (pick(c), r.as_str()))
                .filter(|(n, _)| *n > 0)
                .collect();
            v.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(y.1)));
            let total = v.iter().map(|x| x.0).sum::<u64>() + pick(&self.outside_registry);
            let mut parts: Vec<String> =
                v.iter().take(4).map(|(n, r)| format!("{n} {r}")).collect();
            if v.len() > 4 {
                parts.push(format!("{} more", v[4..].iter().map(|x| x.0).sum::<u64>()));
            }
            if pick(&self.outside_registry) > 0 {
                parts.push(format!(
                    "{} keys outside /registry/",
                    pick(&self.outside_registry)
                ));
            }
            (total, parts.join(", "))
        };
        let (changed, c) = list(|c| c.changed);
        let (created, n) = list(|c| c.created);
        let (deleted, g) = list(|c| c.deleted);
        if changed + created + deleted == 0 {
            return format!(
                "this restore changes nothing: the cluster holds what the snapshot holds ({} keys alike)",
                self.unchanged
            );
        }
        let mut parts = Vec::new();
        if changed > 0 {
            parts.push(format!("rolls back {changed} changed objects ({c})"));
        }
        if created > 0 {
            parts.push(format!(
                "removes {created} created since the snapshot ({n})"
            ));
        }
        if deleted > 0 {
            parts.push(format!("brings back {deleted} deleted since ({g})"));
        }
        let ns = self.namespaces().len();
        format!(
            "this restore {}{}; {} keys stay as they are",
            parts.join(", "),
            if ns > 0 {
                format!(", in {ns} namespaces")
            } else {
                String::new()
            },
            self.unchanged
        )
    }
}

/// The diff for people: the summary table (resource, created since, deleted since, changed,
/// namespaces), what a restore does, and with `objects` every differing key.
pub fn render(d: &Diff, objects: bool) -> String {
    let mut t = crate::table::Table::new(
        &[
            "RESOURCE",
            "CREATED SINCE",
            "DELETED SINCE",
            "CHANGED",
            "NAMESPACES",
        ],
        &[1, 2, 3, 4],
        false,
    );
    for (r, c) in d.resources.iter().filter(|(_, c)| c.total() > 0) {
        t.row([
            r.clone(),
            c.created.to_string(),
            c.deleted.to_string(),
            c.changed.to_string(),
            c.namespaces.len().to_string(),
        ]);
    }
    let o = &d.outside_registry;
    if o.total() > 0 {
        t.row([
            "(outside /registry/)".to_string(),
            o.created.to_string(),
            o.deleted.to_string(),
            o.changed.to_string(),
            "-".to_string(),
        ]);
    }
    let mut out = String::new();
    if d.resources.values().any(|c| c.total() > 0) || o.total() > 0 {
        out.push_str(&t.render());
        out.push('\n');
    }
    out.push_str(&format!("{}\n", d.restore_sentence()));
    if objects && !d.keys.is_empty() {
        out.push('\n');
        for k in &d.keys {
            let what = match k.change {
                Change::Created => "created",
                Change::Deleted => "deleted",
                Change::Changed => "changed",
            };
            let place = match &k.resource {
                Some(r) => format!(
                    "{}  {}{}",
                    r.resource,
                    r.namespace
                        .as_deref()
                        .map_or(String::new(), |n| format!("{n}/")),
                    r.name
                ),
                None => k.key.clone(),
            };
            out.push_str(&format!("{what:<8} {place}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_in_kubernetes_layout() {
        let r = |k: &str| Resource::of(k.as_bytes()).unwrap();
        assert_eq!(
            r("/registry/deployments/default/web"),
            Resource {
                resource: "deployments".into(),
                namespace: Some("default".into()),
                name: "web".into()
            }
        );
        assert_eq!(r("/registry/namespaces/kube-system").namespace, None);
        let crd = r("/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com");
        assert_eq!(
            crd.resource,
            "customresourcedefinitions.apiextensions.k8s.io"
        );
        assert_eq!(crd.name, "widgets.example.com");
        let cr = r("/registry/example.com/widgets/team-a/w1");
        assert_eq!(
            (cr.resource.as_str(), cr.namespace.as_deref()),
            ("widgets.example.com", Some("team-a"))
        );
        assert_eq!(
            r("/registry/services/specs/default/kubernetes").resource,
            "services"
        );
        assert_eq!(r("/registry/minions/cp1").resource, "nodes");
        assert_eq!(r("/registry/ranges/serviceips").name, "serviceips");
        assert!(Resource::of(b"/fixture/k1").is_none());
    }

    #[test]
    fn encryption_prefixes_name_provider_and_key() {
        assert_eq!(
            encryption_of(b"k8s:enc:aescbc:v1:key1:\x8a\x00\xff"),
            Some(("aescbc", "key1"))
        );
        assert_eq!(
            encryption_of(b"k8s:enc:secretbox:v1:2026-rotation:abc"),
            Some(("secretbox", "2026-rotation"))
        );
        assert_eq!(encryption_of(b"k8s\x00\n\x0cv1"), None);
        assert_eq!(encryption_of(b"{\"kind\":\"Widget\"}"), None);
    }

    fn contents(pairs: &[(&str, &str)]) -> Contents {
        let mut c = Contents::default();
        for (i, (k, v)) in pairs.iter().enumerate() {
            c.put(k.as_bytes(), i as i64 + 1, v.as_bytes());
        }
        c
    }

    #[test]
    fn a_diff_counts_per_resource_and_says_what_a_restore_does() {
        let old = contents(&[
            ("/registry/deployments/a/web", "v1"),
            ("/registry/secrets/a/s", "x"),
            ("/registry/secrets/b/s", "y"),
            ("/registry/configmaps/a/gone", "z"),
            ("/other", "1"),
        ]);
        let new = contents(&[
            ("/registry/deployments/a/web", "v2"),
            ("/registry/secrets/a/s", "x"),
            ("/registry/secrets/b/s", "y2"),
            ("/registry/events/a/e1", "e"),
            ("/registry/events/a/e2", "e"),
            ("/other", "2"),
        ]);
        let d = Diff::of(&old, &new);
        assert_eq!(d.unchanged, 1);
        assert_eq!(d.resources["deployments"].changed, 1);
        assert_eq!(d.resources["secrets"].changed, 1);
        assert_eq!(d.resources["events"].created, 2);
        assert_eq!(d.resources["configmaps"].deleted, 1);
        assert_eq!(d.outside_registry.changed, 1);
        assert_eq!(
            d.restore_sentence(),
            "this restore rolls back 3 changed objects (1 deployments, 1 secrets, 1 keys outside /registry/), removes 2 created since the snapshot (2 events), brings back 1 deleted since (1 configmaps), in 2 namespaces; 1 keys stay as they are"
        );
        assert_eq!(
            Diff::of(&old, &old).restore_sentence().split(':').next(),
            Some("this restore changes nothing")
        );
    }

    #[test]
    fn a_snapshot_file_is_read_to_its_live_keys() {
        // The fixture: /fixture/k1..k3 put, then k2 deleted.
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/snapshots/etcd-3.6.db");
        let c = Contents::of_file(&path).unwrap();
        let keys: Vec<&[u8]> = c.keys.keys().map(Vec::as_slice).collect();
        assert_eq!(keys, [b"/fixture/k1".as_slice(), b"/fixture/k3".as_slice()]);
        assert_eq!(c.revision, 5);
    }
}
