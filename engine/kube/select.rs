//! Which etcd keys a resource argument names (`secrets`, `deploy`, `crd`,
//! `widgets.example.com`), the way kubectl reads resource names, mapped onto where
//! kube-apiserver keeps them: `/registry/[GROUP/]RESOURCE/[NAMESPACE/]NAME`.

/// kubectl's short names for built-in resources, and the plural each stands for.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("cm", "configmaps"),
    ("crd", "customresourcedefinitions.apiextensions.k8s.io"),
    ("crds", "customresourcedefinitions.apiextensions.k8s.io"),
    ("csr", "certificatesigningrequests"),
    ("cj", "cronjobs"),
    ("ds", "daemonsets"),
    ("deploy", "deployments"),
    ("ep", "endpoints"),
    ("ev", "events"),
    ("hpa", "horizontalpodautoscalers"),
    ("ing", "ingresses"),
    ("limits", "limitranges"),
    ("netpol", "networkpolicies"),
    ("no", "nodes"),
    ("ns", "namespaces"),
    ("pdb", "poddisruptionbudgets"),
    ("pc", "priorityclasses"),
    ("po", "pods"),
    ("pv", "persistentvolumes"),
    ("pvc", "persistentvolumeclaims"),
    ("quota", "resourcequotas"),
    ("rc", "replicationcontrollers"),
    ("rs", "replicasets"),
    ("sa", "serviceaccounts"),
    ("sc", "storageclasses"),
    ("sts", "statefulsets"),
    ("svc", "services"),
    ("apiservice", "apiservices.apiregistration.k8s.io"),
    ("apiservices", "apiservices.apiregistration.k8s.io"),
    (
        "customresourcedefinition",
        "customresourcedefinitions.apiextensions.k8s.io",
    ),
    (
        "customresourcedefinitions",
        "customresourcedefinitions.apiextensions.k8s.io",
    ),
];

/// Built-in resources kept under another directory than their plural.
const KEY_DIRS: &[(&str, &str)] = &[
    ("nodes", "minions"),
    ("services", "services/specs"),
    ("endpoints", "services/endpoints"),
    ("ingresses", "ingress"),
    ("replicationcontrollers", "controllers"),
];

/// A resource argument, resolved: the plural names it may mean and the group it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// What the operator typed, for messages.
    pub arg: String,
    /// Plural candidates (`secret` → `secret`, `secrets`, ...); kubectl's short names expanded.
    plurals: Vec<String>,
    /// `apps`, `example.com`; `None` when the argument named none.
    pub group: Option<String>,
}

impl Selector {
    pub fn parse(arg: &str) -> Result<Selector, String> {
        let lower = arg.trim().to_ascii_lowercase();
        if lower.is_empty()
            || !lower
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(format!(
                "{arg:?} is not a resource name (letters, digits, '-' and '.')"
            ));
        }
        let expanded = SHORT_NAMES
            .iter()
            .find(|(s, _)| *s == lower)
            .map_or(lower.as_str(), |(_, full)| full);
        let (name, group) = match expanded.split_once('.') {
            Some((n, g)) => (n, Some(g.to_string())),
            None => (expanded, None),
        };
        // kubectl accepts the singular and the kind: `secret`, `deployment`, `networkpolicy`.
        let mut plurals = vec![name.to_string(), format!("{name}s"), format!("{name}es")];
        if let Some(stem) = name.strip_suffix('y') {
            plurals.push(format!("{stem}ies"));
        }
        Ok(Selector {
            arg: arg.to_string(),
            plurals,
            group,
        })
    }

    /// Whether the etcd key holds an object of this resource.
    pub fn matches(&self, key: &[u8]) -> bool {
        let Some(rest) = key.strip_prefix(b"/registry/") else {
            return false;
        };
        let mut parts = rest.splitn(3, |&b| b == b'/');
        let (Some(first), Some(second)) = (parts.next(), parts.next()) else {
            return false;
        };
        // A dotted first segment is a group (custom resources, CRDs, APIServices); built-in
        // groups are not in the key.
        if first.contains(&b'.') {
            return self.group.as_deref().is_none_or(|g| g.as_bytes() == first)
                && self.plurals.iter().any(|p| p.as_bytes() == second);
        }
        self.plurals.iter().any(|p| {
            let dir = KEY_DIRS
                .iter()
                .find(|(plural, _)| plural == p)
                .map_or(p.as_str(), |(_, dir)| dir);
            match dir.split_once('/') {
                Some((a, b)) => first == a.as_bytes() && second == b.as_bytes(),
                None => first == dir.as_bytes(),
            }
        })
    }
}

/// The resource directory of a key, for a census of what a snapshot holds: `secrets`,
/// `widgets.example.com`, `services` (from `services/specs`).
pub fn resource_of(key: &[u8]) -> Option<String> {
    let rest = std::str::from_utf8(key.strip_prefix(b"/registry/")?).ok()?;
    let mut parts = rest.split('/');
    let first = parts.next()?;
    let second = parts.next()?;
    if first.contains('.') {
        return Some(format!("{second}.{first}"));
    }
    let dir = match second {
        "specs" | "endpoints" if first == "services" => format!("services/{second}"),
        _ => first.to_string(),
    };
    Some(
        KEY_DIRS
            .iter()
            .find(|(_, d)| *d == dir)
            .map_or(dir, |(plural, _)| plural.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(arg: &str, key: &str) -> bool {
        Selector::parse(arg).unwrap().matches(key.as_bytes())
    }

    #[test]
    fn names_singulars_short_names_and_groups_find_their_keys() {
        assert!(m("secrets", "/registry/secrets/shop/db"));
        assert!(m("secret", "/registry/secrets/shop/db"));
        assert!(m("Secret", "/registry/secrets/shop/db"));
        assert!(!m("secrets", "/registry/configmaps/shop/db"));
        assert!(m("deploy", "/registry/deployments/shop/web"));
        assert!(m("deployments.apps", "/registry/deployments/shop/web"));
        assert!(m("networkpolicy", "/registry/networkpolicies/shop/deny"));
        assert!(m(
            "crd",
            "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com"
        ));
        assert!(m(
            "widgets.example.com",
            "/registry/example.com/widgets/shop/w1"
        ));
        assert!(m("widgets", "/registry/example.com/widgets/shop/w1"));
        assert!(!m(
            "widgets.other.io",
            "/registry/example.com/widgets/shop/w1"
        ));
        assert!(m("svc", "/registry/services/specs/default/kubernetes"));
        assert!(!m("svc", "/registry/services/endpoints/default/kubernetes"));
        assert!(m("ep", "/registry/services/endpoints/default/kubernetes"));
        assert!(m("nodes", "/registry/minions/cp1"));
        assert!(m("ing", "/registry/ingress/shop/web"));
        assert!(!m("secrets", "/other/secrets/x"));
        assert!(Selector::parse("a/b").is_err());
        assert!(Selector::parse("").is_err());
    }

    #[test]
    fn a_census_names_resources_as_they_are_typed() {
        let r = |k: &str| resource_of(k.as_bytes());
        assert_eq!(r("/registry/secrets/shop/db").as_deref(), Some("secrets"));
        assert_eq!(
            r("/registry/services/specs/default/kubernetes").as_deref(),
            Some("services")
        );
        assert_eq!(r("/registry/minions/cp1").as_deref(), Some("nodes"));
        assert_eq!(
            r("/registry/example.com/widgets/shop/w1").as_deref(),
            Some("widgets.example.com")
        );
        assert_eq!(r("/somewhere/else"), None);
    }
}
