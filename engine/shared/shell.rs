//! POSIX shell quoting: the one place values from plans and inventories become shell words.
//!
//! Hand-written rather than taken from a crate on purpose: the quoted words are read by
//! reviewers in every compiled plan, and whole-word single quotes (`'a b'`) read far better
//! than quoting that starts mid-word (`a' b'`), while being just as safe.

/// Characters that never need quoting in any position we place a value.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// Quote `s` as a single `/bin/sh` word: left alone when plain, else single-quoted with
/// each `'` written as `'\''`. Inside single quotes nothing is special, not even newlines.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_plain) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Commands as one script that stops at the first failure and says which command it was,
/// also when the command ends the script itself with `exit` (the EXIT trap sees that too).
pub fn group_script(commands: &[&str]) -> String {
    let n = commands.len();
    let mut s = format!(
        "trap 'rc=$?; [ \"$rc\" -eq 0 ] || echo \"runbook: command $runbook_k of {n} failed (exit $rc)\" >&2' EXIT\n"
    );
    for (k, c) in commands.iter().enumerate() {
        // The newline before `}` lets a command end in a comment or a here-doc.
        s.push_str(&format!("runbook_k={}\n{{ {c}\n}} || exit $?\n", k + 1));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh_printf(word: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {word}"))
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn plain_words_are_left_alone_and_hostile_ones_neutralised() {
        assert_eq!(quote("/var/lib/etcd"), "/var/lib/etcd");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        for hostile in [
            "$(id)",
            "`id`",
            "a;b",
            "it's",
            "a\nb",
            "a b",
            "*",
            "~root",
            "-n",
            "'; reboot; '",
            "\\",
            "",
        ] {
            assert_eq!(sh_printf(&quote(hostile)), hostile, "{hostile:?}");
        }
    }
}
