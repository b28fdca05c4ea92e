//! kube-apiserver's REST API, as far as re-creating objects needs it: read, create (and
//! server-side dry-run create), replace. Credentials come from a kubeconfig — an operator's
//! own file, or kubeadm's `admin.conf` read from a control-plane node over SSH into memory,
//! with the API reached through an SSH forward to that node's loopback.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// What a kubeconfig's current context says: where the API is and how to prove who we are.
pub struct Credentials {
    /// `https://host:port` as written.
    pub server: String,
    pub ca: Option<Vec<u8>>,
    /// PEM certificate and key, or a bearer token.
    pub client: Client,
}

pub enum Client {
    Certificate { cert: Vec<u8>, key: Vec<u8> },
    Token(String),
    None,
}

impl Drop for Credentials {
    fn drop(&mut self) {
        if let Client::Certificate { key, .. } = &mut self.client {
            key.iter_mut().for_each(|b| *b = 0);
        }
    }
}

/// Where a kubeconfig value comes from: written inline (`...-data`) or a file it names (read
/// on the machine the kubeconfig belongs to: this one, or the node it was read from).
pub enum Source {
    Data(Vec<u8>),
    File(String),
}

/// The current context of a kubeconfig, its file references not yet read.
pub struct Kubeconfig {
    server: String,
    ca: Option<Source>,
    cert: Option<Source>,
    key: Option<Source>,
    token: Option<String>,
}

impl Kubeconfig {
    pub fn parse(text: &str) -> Result<Kubeconfig, String> {
        let v: Value = serde_saphyr::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
        let current = v["current-context"]
            .as_str()
            .ok_or("the kubeconfig has no current-context")?;
        let named = |list: &str, name: &str| -> Result<Value, String> {
            v[list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .map(|e| e[&list[..list.len() - 1]].clone())
                .ok_or_else(|| format!("the kubeconfig names {list} entry {name:?} but has none"))
        };
        let context = named("contexts", current)?;
        let cluster = named("clusters", context["cluster"].as_str().unwrap_or(""))?;
        let user = named("users", context["user"].as_str().unwrap_or(""))?;
        let source = |v: &Value, field: &str| -> Result<Option<Source>, String> {
            if let Some(b64) = v[format!("{field}-data")].as_str() {
                return base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map(|d| Some(Source::Data(d)))
                    .map_err(|e| format!("{field}-data is not base64: {e}"));
            }
            Ok(v[field].as_str().map(|p| Source::File(p.to_string())))
        };
        Ok(Kubeconfig {
            server: cluster["server"]
                .as_str()
                .ok_or("the kubeconfig's cluster has no server")?
                .trim_end_matches('/')
                .to_string(),
            ca: source(&cluster, "certificate-authority")?,
            cert: source(&user, "client-certificate")?,
            key: source(&user, "client-key")?,
            token: user["token"].as_str().map(str::to_string),
        })
    }

    /// The files it names, to be read where it came from.
    pub fn files(&self) -> Vec<String> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .filter_map(|s| match s {
                Some(Source::File(p)) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// With the files it names read (`read` answers for each path of `files`).
    pub fn credentials(
        self,
        read: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Credentials, String> {
        let resolve = |s: Option<Source>| -> Result<Option<Vec<u8>>, String> {
            match s {
                None => Ok(None),
                Some(Source::Data(d)) => Ok(Some(d)),
                Some(Source::File(p)) => read(&p)
                    .map(Some)
                    .ok_or_else(|| format!("the kubeconfig names {p}, which was not read")),
            }
        };
        let ca = resolve(self.ca)?;
        let client = match (resolve(self.cert)?, resolve(self.key)?, self.token) {
            (Some(cert), Some(key), _) => Client::Certificate { cert, key },
            (_, _, Some(token)) => Client::Token(token),
            _ => Client::None,
        };
        Ok(Credentials {
            server: self.server,
            ca,
            client,
        })
    }
}

impl Credentials {
    /// The API server's port, from `server` (443 when it names none).
    pub fn port(&self) -> u16 {
        self.server
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(443)
    }
}

/// kube-apiserver of the first control-plane node (else etcd member) that answers, with
/// kubeadm's admin kubeconfig read from it over SSH (never written to this machine) and the
/// API reached through an SSH forward to its loopback. Answers the node's name and the
/// kubeconfig's path too.
pub async fn through_nodes<E: crate::executor::Executor + ?Sized>(
    exec: &E,
    inventory: &crate::inventory::model::Inventory,
) -> Result<(Api, String, String), String> {
    use crate::executor::output_on;
    use crate::shell::quote;
    let mut tried = Vec::new();
    for node in api_nodes(inventory) {
        // kubeadm writes the admin kubeconfig beside the manifests' directory.
        let conf = std::path::Path::new(&node.etcd.manifests_dir)
            .parent()
            .unwrap_or(std::path::Path::new("/etc/kubernetes"))
            .join("admin.conf")
            .to_string_lossy()
            .into_owned();
        let attempt = async {
            let read = |path: String| async move {
                output_on(
                    exec,
                    node,
                    &format!("cat -- {}", quote(&path)),
                    &format!("cannot read {path}"),
                )
                .await
            };
            let text = read(conf.clone()).await?;
            let config = Kubeconfig::parse(&String::from_utf8_lossy(&text))
                .map_err(|e| format!("{conf}: {e}"))?;
            let mut files = std::collections::HashMap::new();
            for f in config.files() {
                let data = read(f.clone()).await?;
                files.insert(f, data);
            }
            let creds = config.credentials(&|f| files.get(f).cloned())?;
            let addr = exec.tunnel(node, creds.port()).await.map_err(|e| e.0)?;
            Api::connect(&creds, Some(addr))
        };
        match attempt.await {
            Ok(api) => return Ok((api, node.name.clone(), conf)),
            Err(e) => tried.push(format!("{}: {e}", node.name)),
        }
    }
    Err(format!(
        "no control-plane node's kube-apiserver could be reached: {}",
        tried.join("; ")
    ))
}

/// A connection to one kube-apiserver.
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// One API call's answer: the status and the body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The Status object's message, for errors.
    pub fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", self.status), str::to_string)
    }
}

impl Api {
    /// Straight to the server the kubeconfig names, or — `via` an SSH forward's local end —
    /// to the node's loopback, checked as `kubernetes`: the name kube-apiserver's serving
    /// certificate carries on every kubeadm cluster.
    pub fn connect(creds: &Credentials, via: Option<SocketAddr>) -> Result<Api, String> {
        crate::install_crypto();
        let fail = |e: reqwest::Error| format!("cannot set up the API client: {e}");
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy();
        if let Some(ca) = &creds.ca {
            b = b.tls_certs_only([reqwest::Certificate::from_pem(ca).map_err(fail)?]);
        }
        if let Client::Certificate { cert, key } = &creds.client {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity = reqwest::Identity::from_pem(&pem);
            pem.iter_mut().for_each(|b| *b = 0);
            b = b.identity(identity.map_err(fail)?);
        }
        let base = match via {
            Some(addr) => {
                b = b.resolve("kubernetes", addr);
                format!("https://kubernetes:{}", addr.port())
            }
            None => creds.server.clone(),
        };
        if let Client::Token(t) = &creds.client {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|e| format!("the kubeconfig's token cannot be sent: {e}"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
            b = b.default_headers(headers);
        }
        Ok(Api {
            http: b.build().map_err(fail)?,
            base,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(b).unwrap_or_default());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// POST to a collection; with `dry_run` kube-apiserver validates and admits the object
    /// (defaults, webhooks) without storing it.
    pub async fn create(
        &self,
        collection: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<Answer, String> {
        self.call(
            reqwest::Method::POST,
            &writing(collection, dry_run),
            Some(object),
        )
        .await
    }

    /// Every resource kube-apiserver lists, by (group, plural) — the core group is "" —
    /// with its collection path at the group's preferred version.
    pub async fn listable(
        &self,
    ) -> Result<std::collections::BTreeMap<(String, String), String>, String> {
        let mut out = std::collections::BTreeMap::new();
        let mut versions = vec![(String::new(), "/api/v1".to_string())];
        let groups = self.get("/apis").await?;
        for g in groups.body["groups"].as_array().into_iter().flatten() {
            if let (Some(name), Some(gv)) = (
                g["name"].as_str(),
                g["preferredVersion"]["groupVersion"].as_str(),
            ) {
                versions.push((name.to_string(), format!("/apis/{gv}")));
            }
        }
        for (group, base) in versions {
            let list = self.get(&base).await?;
            if list.status != 200 {
                continue;
            }
            for r in list.body["resources"].as_array().into_iter().flatten() {
                let (Some(name), Some(verbs)) = (r["name"].as_str(), r["verbs"].as_array()) else {
                    continue;
                };
                // Subresources (pods/log) are not objects.
                if name.contains('/') || !verbs.iter().any(|v| v == "list") {
                    continue;
                }
                out.entry((group.clone(), name.to_string()))
                    .or_insert_with(|| format!("{base}/{name}"));
            }
        }
        Ok(out)
    }

    /// How many objects a collection holds: from one item and kube-apiserver's
    /// remainingItemCount when it gives one, else by paging through it.
    pub async fn count(&self, collection: &str) -> Result<u64, String> {
        let mut total = 0u64;
        let mut next = String::new();
        let mut limit = 1;
        loop {
            let page = self
                .get(&format!(
                    "{collection}?limit={limit}&continue={}",
                    percent_encoding::utf8_percent_encode(
                        &next,
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ))
                .await?;
            if page.status != 200 {
                return Err(format!("list {collection}: {}", page.message()));
            }
            total += page.body["items"].as_array().map_or(0, Vec::len) as u64;
            if let Some(rest) = page.body["metadata"]["remainingItemCount"].as_u64() {
                return Ok(total + rest);
            }
            match page.body["metadata"]["continue"].as_str() {
                Some(c) if !c.is_empty() => next = c.to_string(),
                _ => return Ok(total),
            }
            limit = 500;
        }
    }

    pub async fn replace(
        &self,
        path: &str,
        object: &Value,
        dry_run: bool,
    ) -> Result<Answer, String> {
        self.call(reqwest::Method::PUT, &writing(path, dry_run), Some(object))
            .await
    }
}

/// A write's URL: runbook named as the field manager, and `dryRun=All` for a dry run.
fn writing(path: &str, dry_run: bool) -> String {
    if dry_run {
        format!("{path}?dryRun=All&fieldManager=runbook")
    } else {
        format!("{path}?fieldManager=runbook")
    }
}

/// `/api/v1` for the core group, `/apis/GROUP/VERSION` otherwise; then the namespace, the
/// plural and the name, each encoded as one path segment (names come from snapshot keys).
pub fn object_path(
    api_version: &str,
    namespace: Option<&str>,
    plural: &str,
    name: Option<&str>,
) -> String {
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let mut p = match namespace {
        Some(ns) => format!("{base}/namespaces/{}/{}", segment(ns), segment(plural)),
        None => format!("{base}/{}", segment(plural)),
    };
    if let Some(n) = name {
        p.push('/');
        p.push_str(&segment(n));
    }
    p
}

/// One URL path segment: everything but unreserved characters (and `:`, which RBAC names
/// use) percent-encoded, so a name can never add a segment or a query.
fn segment(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b':');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// The nodes whose kube-apiserver runbook asks: the control plane, else the etcd members
/// (stacked kubeadm inventories name only the latter).
pub fn api_nodes(
    inventory: &crate::inventory::model::Inventory,
) -> Vec<&crate::inventory::model::Node> {
    let nodes: Vec<_> = inventory
        .with_role(crate::inventory::model::CONTROL_PLANE_ROLE)
        .collect();
    if nodes.is_empty() {
        inventory.etcd_members()
    } else {
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_context_decides_and_file_references_are_read() {
        let config = "apiVersion: v1\nkind: Config\ncurrent-context: admin@prod\ncontexts:\n- name: other\n  context: {cluster: x, user: x}\n- name: admin@prod\n  context: {cluster: prod, user: admin}\nclusters:\n- name: prod\n  cluster:\n    server: https://10.0.0.11:6443\n    certificate-authority: /etc/kubernetes/pki/ca.crt\nusers:\n- name: admin\n  user:\n    client-certificate-data: Y2VydA==\n    client-key-data: a2V5\n";
        let k = Kubeconfig::parse(config).unwrap();
        assert_eq!(k.files(), ["/etc/kubernetes/pki/ca.crt"]);
        let c = k
            .credentials(&|p| (p == "/etc/kubernetes/pki/ca.crt").then(|| b"ca".to_vec()))
            .unwrap();
        assert_eq!(c.server, "https://10.0.0.11:6443");
        assert_eq!(c.port(), 6443);
        assert_eq!(c.ca.as_deref(), Some(&b"ca"[..]));
        assert!(
            matches!(&c.client, Client::Certificate { cert, key } if cert == b"cert" && key == b"key")
        );
        assert!(
            Kubeconfig::parse(config)
                .unwrap()
                .credentials(&|_| None)
                .is_err()
        );
        let token = config.replace(
            "    client-certificate-data: Y2VydA==\n    client-key-data: a2V5\n",
            "    token: abc\n",
        );
        let c = Kubeconfig::parse(&token)
            .unwrap()
            .credentials(&|_| Some(vec![]))
            .unwrap();
        assert!(matches!(c.client, Client::Token(ref t) if t == "abc"));
        let missing = config.replace("current-context: admin@prod", "current-context: nope");
        assert!(Kubeconfig::parse(&missing).is_err());
    }
}
