//! etcd versions and the features each one has.

use std::fmt;

/// major.minor.patch of an etcd release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtcdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl EtcdVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        EtcdVersion {
            major,
            minor,
            patch,
        }
    }

    /// Accepts "3.5.16" and "v3.5.16" (SemVer, as etcd tags its releases); a pre-release or
    /// build suffix ("3.6.0-rc.1") is read and then ignored: features follow major.minor.patch.
    /// The error is semver's reason ("unexpected end of input while parsing minor version
    /// number"), for the caller to locate.
    pub fn parse(text: &str) -> Result<Self, semver::Error> {
        let t = text.trim();
        let v = semver::Version::parse(t.strip_prefix('v').unwrap_or(t))?;
        // etcd's numbers are small; a component past u32 is no etcd release.
        let part = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(EtcdVersion::new(
            part(v.major),
            part(v.minor),
            part(v.patch),
        ))
    }

    /// etcdutl ships from 3.5; before that, restore is `etcdctl snapshot restore`.
    pub fn has_etcdutl(self) -> bool {
        self >= EtcdVersion::new(3, 5, 0)
    }

    /// `etcdctl snapshot restore|status` were removed in 3.6.
    pub fn etcdctl_snapshot_removed(self) -> bool {
        self >= EtcdVersion::new(3, 6, 0)
    }

    /// `--bump-revision` and `--mark-compacted` exist from 3.5.10 and 3.4.27.
    pub fn supports_bump_revision(self) -> bool {
        self >= EtcdVersion::new(3, 5, 10)
            || (self.major == 3 && self.minor == 4 && self.patch >= 27)
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_release_notes() {
        let v = |s| EtcdVersion::parse(s).unwrap();
        assert!(!v("3.4.23").has_etcdutl());
        assert!(v("3.5.1").has_etcdutl());
        assert!(!v("3.4.26").supports_bump_revision());
        assert!(v("3.4.27").supports_bump_revision());
        assert!(!v("3.5.9").supports_bump_revision());
        assert!(v("v3.5.10").supports_bump_revision());
        assert!(v("3.6.0-rc.1").etcdctl_snapshot_removed());
        assert_eq!(v(" 3.5.16+build.2 "), EtcdVersion::new(3, 5, 16));
        let err = |s| EtcdVersion::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("3.5"),
            "unexpected end of input while parsing minor version number"
        );
        assert_eq!(
            err("3.5.x"),
            "unexpected character 'x' while parsing patch version number"
        );
        assert!(EtcdVersion::parse("latest").is_err());
    }
}
