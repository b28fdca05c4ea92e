//! What runbook reads of Kubernetes' own files on a control-plane node: kube-apiserver's
//! flags from its static pod manifest, and the keys of its EncryptionConfiguration — which
//! encryption key can decrypt which resource after a restore.

use serde_json::Value;

pub mod api;
pub mod decrypt;
pub mod object;
pub mod recreate;
pub mod select;

/// The value of `--flag` among kube-apiserver's command and args (`--flag=V` or `--flag V`).
pub fn apiserver_flag(manifest: &str, flag: &str) -> Result<Option<String>, String> {
    let v: Value = serde_saphyr::from_str(manifest)
        .map_err(|e| format!("the kube-apiserver manifest is not YAML: {e}"))?;
    let containers = v
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .ok_or("the kube-apiserver manifest has no spec.containers")?;
    let words: Vec<&str> = containers
        .iter()
        .flat_map(|c| {
            ["command", "args"].into_iter().flat_map(move |f| {
                c.get(f)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
            })
        })
        .collect();
    let with_eq = format!("{flag}=");
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix(&with_eq) {
            return Ok(Some(v.to_string()));
        }
        if *w == flag {
            return Ok(words.get(i + 1).map(|v| v.to_string()));
        }
    }
    Ok(None)
}

/// One `resources:` entry of an EncryptionConfiguration: the resources it covers and the
/// (provider, key name) pairs that can read them (identity as ("identity", "")).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub resources: Vec<String>,
    pub keys: Vec<(String, String)>,
}

/// The rules of an EncryptionConfiguration, in order (kube-apiserver uses the first that
/// matches a resource).
pub fn encryption_rules(config: &str) -> Result<Vec<Rule>, String> {
    let v: Value = serde_saphyr::from_str(config).map_err(|e| format!("not YAML: {e}"))?;
    if v.get("kind").and_then(Value::as_str) != Some("EncryptionConfiguration") {
        return Err("not an EncryptionConfiguration (kind)".into());
    }
    let mut rules = Vec::new();
    for entry in v
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let resources = entry
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let mut keys = Vec::new();
        for p in entry
            .get("providers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(obj) = p.as_object() else { continue };
            for (provider, body) in obj {
                match provider.as_str() {
                    "identity" => keys.push(("identity".into(), String::new())),
                    // KMS values carry the provider's name where the others carry a key name.
                    "kms" => {
                        if let Some(n) = body.get("name").and_then(Value::as_str) {
                            keys.push(("kms".into(), n.to_string()));
                        }
                    }
                    _ => {
                        for k in body
                            .get("keys")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            if let Some(n) = k.get("name").and_then(Value::as_str) {
                                keys.push((provider.clone(), n.to_string()));
                            }
                        }
                    }
                }
            }
        }
        rules.push(Rule { resources, keys });
    }
    Ok(rules)
}

/// Every key of an EncryptionConfiguration that carries a secret: (provider, name, secret
/// as written, base64). What `snapshot get --encryption-config` decrypts with.
pub fn key_secrets(config: &str) -> Result<Vec<(String, String, String)>, String> {
    let v: Value = serde_saphyr::from_str(config).map_err(|e| format!("not YAML: {e}"))?;
    if v.get("kind").and_then(Value::as_str) != Some("EncryptionConfiguration") {
        return Err("not an EncryptionConfiguration (kind)".into());
    }
    let list = |v: &Value, f: &str| {
        v.get(f)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for entry in list(&v, "resources") {
        for p in list(&entry, "providers") {
            let Some(obj) = p.as_object() else { continue };
            for (provider, body) in obj {
                for k in list(body, "keys") {
                    if let (Some(n), Some(s)) = (
                        k.get("name").and_then(Value::as_str),
                        k.get("secret").and_then(Value::as_str),
                    ) {
                        out.push((provider.clone(), n.to_string(), s.to_string()));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Whether a rule's resource pattern covers `resource` (`secrets`, `widgets.example.com`):
/// the name itself, `*.*` (everything), `*.GROUP` (a group; `*.` is the core group).
fn covers(pattern: &str, resource: &str) -> bool {
    if pattern == resource || pattern == "*.*" {
        return true;
    }
    let group = resource.split_once('.').map_or("", |(_, g)| g);
    pattern.strip_prefix("*.") == Some(group)
}

/// The keys kube-apiserver tries for `resource`: those of the first rule that covers it;
/// none covers it: identity only.
pub fn keys_for<'a>(rules: &'a [Rule], resource: &str) -> Vec<&'a (String, String)> {
    static IDENTITY: std::sync::LazyLock<(String, String)> =
        std::sync::LazyLock::new(|| ("identity".to_string(), String::new()));
    match rules
        .iter()
        .find(|r| r.resources.iter().any(|p| covers(p, resource)))
    {
        Some(r) => r.keys.iter().collect(),
        None => vec![&*IDENTITY],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_read_from_command_or_args() {
        let m = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --etcd-servers=https://127.0.0.1:2379\n    - --encryption-provider-config=/etc/kubernetes/enc/config.yaml\n";
        assert_eq!(
            apiserver_flag(m, "--encryption-provider-config")
                .unwrap()
                .as_deref(),
            Some("/etc/kubernetes/enc/config.yaml")
        );
        let spaced = "spec:\n  containers:\n  - args: [--encryption-provider-config, /x.yaml]\n";
        assert_eq!(
            apiserver_flag(spaced, "--encryption-provider-config")
                .unwrap()
                .as_deref(),
            Some("/x.yaml")
        );
        assert_eq!(
            apiserver_flag("spec:\n  containers: []\n", "--x").unwrap(),
            None
        );
        assert!(apiserver_flag("kind: Pod\n", "--x").is_err());
    }

    #[test]
    fn the_first_rule_that_covers_a_resource_decides() {
        let config = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - {name: key2, secret: c2VjcmV0}\n      - {name: key1, secret: c2VjcmV0}\n  - identity: {}\n- resources: ['*.example.com']\n  providers:\n  - kms: {name: vault, apiVersion: v2}\n";
        let rules = encryption_rules(config).unwrap();
        let names = |r: &str| -> Vec<String> {
            keys_for(&rules, r)
                .iter()
                .map(|(p, k)| format!("{p}:{k}"))
                .collect()
        };
        assert_eq!(
            names("secrets"),
            ["aescbc:key2", "aescbc:key1", "identity:"]
        );
        assert_eq!(names("widgets.example.com"), ["kms:vault"]);
        assert_eq!(names("configmaps"), ["identity:"]);
        assert!(encryption_rules("kind: Pod\n").is_err());
    }
}
