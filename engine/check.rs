//! Shape checks for values that end up in commands: names, addresses, paths, owners.
//! Values are always shell-quoted as well; these checks reject what no real cluster has.

/// RFC 1123 label: shared with the lab, which names its labs by the same rule.
pub use runbook_shared::is_label;

/// An IP address or a DNS name (labels of letters, digits, '-' separated by dots).
pub fn is_address(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Why a path on a node is unusable, if it is.
pub fn path_problem(s: &str) -> Option<&'static str> {
    if !s.starts_with('/') {
        Some("must be an absolute path")
    } else if s.chars().any(|c| c.is_control()) {
        Some("contains a control character (newline, tab, ...)")
    } else if s.split('/').any(|c| c == "..") {
        Some("must not contain `..`")
    } else {
        None
    }
}

/// `user` or `user:group`, names or numeric ids, as chown accepts them.
pub fn is_owner(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 32
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            && !p.starts_with('-')
    };
    match s.split_once(':') {
        Some((u, g)) => part(u) && part(g),
        None => part(s),
    }
}

/// Lexically normalised absolute path (no `.`, no trailing slash), for containment tests.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether `inner` is `outer` or lies below it.
pub fn is_within(inner: &str, outer: &str) -> bool {
    let (i, o) = (normalize(inner), normalize(outer));
    i == o || o == "/" || i.starts_with(&format!("{o}/"))
}

/// Parses durations such as `90s`, `5m`, `1h30m`, `500ms`; a bare number means seconds.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(std::time::Duration::from_secs(n));
    }
    let mut total_ms: u64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit_ms = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            // Retention ages are written in days.
            'd' => 86_400_000,
            _ => return None,
        };
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        any = true;
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_addresses_paths() {
        assert!(is_label("cp-1"));
        assert!(!is_label("cp_1"));
        assert!(!is_label("cp1;reboot"));
        assert!(!is_label("-cp"));
        assert!(is_address("10.0.0.1"));
        assert!(is_address("fd00::1"));
        assert!(is_address("cp1.example.com"));
        assert!(!is_address("10.0.0.1; rm -rf /"));
        assert!(!is_address("$(id)"));
        assert_eq!(path_problem("var/lib"), Some("must be an absolute path"));
        assert!(path_problem("/var/lib/etcd\nrm").is_some());
        assert!(path_problem("/var/lib/etcd").is_none());
        assert!(is_owner("etcd:etcd"));
        assert!(is_owner("0:0"));
        assert!(!is_owner("root;id"));
    }

    #[test]
    fn containment_is_lexical_and_exact() {
        assert!(is_within(
            "/etc/kubernetes/manifests/parked",
            "/etc/kubernetes/manifests"
        ));
        assert!(is_within(
            "/etc/kubernetes/manifests/",
            "/etc/kubernetes/manifests"
        ));
        assert!(!is_within(
            "/etc/kubernetes/manifests-parked",
            "/etc/kubernetes/manifests"
        ));
        assert!(is_within(
            "/etc/kubernetes/x/../manifests/a",
            "/etc/kubernetes/manifests"
        ));
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
