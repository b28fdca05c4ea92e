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

/// What `snapshot get` was asked for, the way kubectl takes it: `TYPE[,TYPE...] [NAME...]`,
/// or `TYPE/NAME...` (then every argument names one object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    items: Vec<(Selector, Option<String>)>,
}

impl Targets {
    pub fn parse(args: &[String]) -> Result<Targets, String> {
        let mut items = Vec::new();
        if args.iter().any(|a| a.contains('/')) {
            for a in args {
                let Some((ty, name)) = a
                    .split_once('/')
                    .filter(|(t, n)| !t.is_empty() && !n.is_empty())
                else {
                    return Err(format!(
                        "{a:?}: when one argument is TYPE/NAME, every argument must be (as with kubectl)"
                    ));
                };
                items.push((Selector::parse(ty)?, Some(name.to_string())));
            }
        } else if let Some((types, names)) = args.split_first() {
            for ty in types.split(',') {
                let sel = Selector::parse(ty)?;
                if names.is_empty() {
                    items.push((sel, None));
                } else {
                    items.extend(names.iter().map(|n| (sel.clone(), Some(n.clone()))));
                }
            }
        }
        Ok(Targets { items })
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the arguments named objects (not whole resources).
    pub fn named(&self) -> bool {
        self.items.iter().any(|(_, n)| n.is_some())
    }

    /// Whether a key is asked for. `namespace` limits namespaced objects only: kubectl ignores
    /// it for cluster-scoped ones (a Namespace, a CRD).
    pub fn matches(&self, key: &[u8], namespace: Option<&str>) -> bool {
        let mut at = None;
        self.items.iter().any(|(sel, name)| {
            if !sel.matches(key) {
                return false;
            }
            if name.is_none() && namespace.is_none() {
                return true;
            }
            let Some(r) =
                at.get_or_insert_with(|| super::super::snapshot::contents::Resource::of(key))
            else {
                return false;
            };
            name.as_ref().is_none_or(|n| r.name == *n)
                && (r.namespace.is_none()
                    || namespace.is_none_or(|ns| r.namespace.as_deref() == Some(ns)))
        })
    }

    /// What was asked for, for messages: `secrets "db"`, `crd, widgets.example.com`.
    pub fn describe(&self) -> String {
        self.items
            .iter()
            .map(|(s, n)| match n {
                Some(n) => format!("{} {n:?}", s.arg),
                None => s.arg.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether any selector matches a key of `resource` (as `resource_of` names it).
    pub fn covers_resource(&self, resource: &str) -> bool {
        let key = resource
            .split_once('.')
            .map_or(format!("/registry/{resource}/x"), |(res, g)| {
                format!("/registry/{g}/{res}/x")
            });
        self.items.iter().any(|(s, _)| s.matches(key.as_bytes()))
    }

    /// The resource arguments, for "did you mean".
    pub fn args(&self) -> Vec<&str> {
        self.items.iter().map(|(s, _)| s.arg.as_str()).collect()
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
    fn targets_are_read_as_kubectl_reads_them() {
        let t =
            |args: &[&str]| Targets::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let both = t(&["ns/recover", "crd/widgets.example.com"]).unwrap();
        assert!(both.named());
        assert!(both.matches(b"/registry/namespaces/recover", Some("recover")));
        assert!(both.matches(
            b"/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com",
            Some("recover")
        ));
        assert!(!both.matches(b"/registry/namespaces/other", None));
        let kinds = t(&["widgets.example.com,deploy,cm"]).unwrap();
        assert!(!kinds.named());
        assert!(kinds.matches(b"/registry/configmaps/recover/settings", Some("recover")));
        assert!(!kinds.matches(b"/registry/configmaps/other/settings", Some("recover")));
        assert!(kinds.matches(b"/registry/deployments/recover/api", None));
        let named = t(&["secrets", "db", "token"]).unwrap();
        assert!(named.matches(b"/registry/secrets/shop/token", None));
        assert!(!named.matches(b"/registry/secrets/shop/other", None));
        assert!(t(&["ns/recover", "secrets"]).is_err());
        assert!(t(&["ns/"]).is_err());
        assert!(t(&[]).unwrap().is_empty());
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
