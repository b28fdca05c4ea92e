//! etcd's flags as environment variables, the way a systemd member keeps them
//! (`EnvironmentFile=/etc/etcd.env`): etcd reads each flag it was not given on its command
//! line from `ETCD_` + the flag's name in capitals, dashes as underscores.

/// The variable etcd reads a flag from: `initial-cluster-state` -> `ETCD_INITIAL_CLUSTER_STATE`.
pub fn var_of(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// `ETCD_INITIAL_CLUSTER_STATE` + `new` -> `--initial-cluster-state=new`; `None` for a
/// variable that is not one of etcd's.
pub fn flag_of(var: &str, value: &str) -> Option<String> {
    let flag = var.strip_prefix("ETCD_")?;
    (!flag.is_empty()).then(|| format!("--{}={value}", flag.to_ascii_lowercase().replace('_', "-")))
}

/// `NAME=value` lines of an environment file (comments, blank lines and `export` skipped,
/// one level of quotes taken off).
pub fn assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// An environment file's etcd settings as `--flag=value` words.
pub fn flags(text: &str) -> Vec<String> {
    assignments(text)
        .iter()
        .filter_map(|(k, v)| flag_of(k, v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_flags_map_both_ways() {
        assert_eq!(
            var_of("initial-cluster-state"),
            "ETCD_INITIAL_CLUSTER_STATE"
        );
        assert_eq!(
            flag_of("ETCD_QUOTA_BACKEND_BYTES", "8589934592").as_deref(),
            Some("--quota-backend-bytes=8589934592")
        );
        assert_eq!(flag_of("GOMAXPROCS", "2"), None);
        assert_eq!(
            flags(
                "# Environment file for etcd\nETCD_DATA_DIR=/var/lib/etcd\nexport ETCD_NAME=\"etcd1\"\nETCD_INITIAL_CLUSTER_STATE='new'\n\nGOGC=50\n"
            ),
            [
                "--data-dir=/var/lib/etcd",
                "--name=etcd1",
                "--initial-cluster-state=new"
            ]
        );
    }
}
