//! Clock skew between this machine and each node: the node's time (`date +%s.%N` over SSH)
//! against the middle of this machine's clock before and after the call, the way NTP reads
//! one exchange. Of three exchanges the quickest counts (the least time for the answer to wait
//! in a queue); half its round trip is the uncertainty, and only an offset beyond the limit
//! by more than that refuses: a slow link does not refuse a node whose clock is right.
//!
//! etcd's leases and its TLS (certificates checked against each member's clock) assume close
//! clocks; so do a drill report's times, which come from this machine and the nodes' logs.
//! The line each node gets (`line`) is read back by the drill report (`parse_line`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::executor::{Executor, output_on};
use crate::inventory::model::Node;

/// One node's clock against this machine's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Offset {
    pub node: String,
    /// Seconds the node's clock is ahead (negative: behind).
    pub offset: f64,
    /// Half the round trip of the exchange measured, plus what `date` could not say.
    pub uncertainty: f64,
}

/// `date +%s.%N` output as seconds, and the uncertainty its form adds (a `date` without
/// `%N`, as busybox's, prints whole seconds or a literal `N`).
pub fn parse_date(out: &str) -> Result<(f64, f64), String> {
    let t = out.trim();
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    let secs: i64 = secs
        .parse()
        .map_err(|_| format!("`date +%s.%N` printed {t:?}, not seconds"))?;
    if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
        let frac: f64 = format!("0.{frac}").parse().unwrap_or(0.0);
        Ok((secs as f64 + frac, 0.0))
    } else {
        // Whole seconds: the true time is anywhere in the second that follows.
        Ok((secs as f64 + 0.5, 0.5))
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One exchange: (node time, uncertainty from `date`, local before, local after).
pub fn offset_of(node: &str, told: (f64, f64), before: f64, after: f64) -> Offset {
    let mid = (before + after) / 2.0;
    Offset {
        node: node.into(),
        offset: told.0 - mid,
        uncertainty: (after - before).max(0.0) / 2.0 + told.1,
    }
}

/// Three exchanges with the node; the quickest one's offset.
pub async fn measure<E: Executor + ?Sized>(exec: &E, node: &Node) -> Result<Offset, String> {
    let mut best: Option<Offset> = None;
    for _ in 0..3 {
        let before = unix(SystemTime::now());
        let out = output_on(
            exec,
            node,
            "date +%s.%N",
            "cannot read the clock (date +%s.%N)",
        )
        .await?;
        let after = unix(SystemTime::now());
        let told = parse_date(&String::from_utf8_lossy(&out))
            .map_err(|e| format!("{}: {e}", node.name))?;
        let o = offset_of(&node.name, told, before, after);
        if best.as_ref().is_none_or(|b| o.uncertainty < b.uncertainty) {
            best = Some(o);
        }
    }
    best.ok_or_else(|| format!("{}: no clock reading", node.name))
}

/// `clock cp1: +0.004 s (± 0.002 s) against this machine`
pub fn line(o: &Offset) -> String {
    format!(
        "clock {}: {:+.3} s (± {:.3} s) against this machine",
        o.node, o.offset, o.uncertainty
    )
}

/// A `line` read back: node, offset, uncertainty.
pub fn parse_line(l: &str) -> Option<Offset> {
    let rest = l.strip_prefix("clock ")?;
    let (node, rest) = rest.split_once(": ")?;
    let (offset, rest) = rest.split_once(" s (± ")?;
    let (uncertainty, rest) = rest.split_once(" s)")?;
    rest.starts_with(" against this machine").then_some(())?;
    Some(Offset {
        node: node.into(),
        offset: offset.parse().ok()?,
        uncertainty: uncertainty.parse().ok()?,
    })
}

/// The lines shown and the refusals: a node whose clock is off by more than `max` even after
/// allowing for the measurement's uncertainty.
pub fn judge(offsets: &[Offset], max: Duration) -> (Vec<String>, Vec<String>) {
    let max = max.as_secs_f64();
    let mut lines = Vec::new();
    let mut refusals = Vec::new();
    for o in offsets {
        lines.push(line(o));
        if o.offset.abs() - o.uncertainty > max {
            refusals.push(format!(
                "{}: its clock is {:+.3} s (± {:.3} s) off this machine's, more than the {} allowed; \
                 hint: check time sync on {} and here (`chronyc tracking`, `timedatectl`)",
                o.node,
                o.offset,
                o.uncertainty,
                humantime::format_duration(Duration::from_secs_f64(max)),
                o.node
            ));
        }
    }
    (lines, refusals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_forms() {
        assert_eq!(
            parse_date("1800000000.250000000\n"),
            Ok((1_800_000_000.25, 0.0))
        );
        assert_eq!(parse_date("1800000000.N\n"), Ok((1_800_000_000.5, 0.5)));
        assert_eq!(parse_date("1800000000"), Ok((1_800_000_000.5, 0.5)));
        assert!(parse_date("Wed Dec  2").is_err());
    }

    #[test]
    fn offset_is_against_the_middle_of_the_exchange() {
        let o = offset_of("cp1", (1030.1, 0.0), 1000.0, 1000.2);
        assert!((o.offset - 30.0).abs() < 1e-9, "{o:?}");
        assert!((o.uncertainty - 0.1).abs() < 1e-9, "{o:?}");
    }

    #[test]
    fn skew_beyond_the_limit_and_the_uncertainty_refuses() {
        let at = |offset: f64, uncertainty: f64| Offset {
            node: "cp3".into(),
            offset,
            uncertainty,
        };
        let max = Duration::from_secs(2);
        let (lines, refusals) = judge(&[at(0.004, 0.002), at(-1.9, 0.05)], max);
        assert_eq!(lines.len(), 2);
        assert!(refusals.is_empty(), "{refusals:?}");
        // Beyond the limit, but not by more than the round trip allows: not proven, not refused.
        assert!(judge(&[at(2.1, 0.2)], max).1.is_empty());
        let (_, refusals) = judge(&[at(-30.002, 0.003)], max);
        assert_eq!(refusals.len(), 1);
        assert!(
            refusals[0].starts_with("cp3: its clock is -30.002 s (± 0.003 s) off this machine's, more than the 2s allowed"),
            "{refusals:?}"
        );
    }

    #[test]
    fn lines_read_back() {
        let o = Offset {
            node: "cp2".into(),
            offset: -0.0123,
            uncertainty: 0.0021,
        };
        let back = parse_line(&line(&o)).expect("reads back");
        assert_eq!(back.node, "cp2");
        assert!((back.offset - -0.012).abs() < 1e-9 && (back.uncertainty - 0.002).abs() < 1e-9);
        assert_eq!(parse_line("certificate cp1 peer, file /x: expires"), None);
    }
}
