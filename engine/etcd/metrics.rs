//! The health signals a careful operator checks before a snapshot, read from each member's
//! `/metrics` through the same SSH forward and client certificate as its API: a leader,
//! leader changes, WAL fsync latency, and the database against its quota.
//!
//! etcd's counters and histograms run from the member's start, so "in the last hour" is
//! read as: every change, for a member up less than an hour; its average rate over its
//! uptime otherwise (a flapping cluster shows either way). The fsync p99 is over the
//! member's whole uptime too, as etcd's histogram holds it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_parse::{HistogramCount, Scrape, Value};

use super::{TlsMaterial, read_tls};
use crate::executor::Executor;
use crate::inventory::model::Node;

/// What one member's `/metrics` said; `None` where it did not say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    pub node: String,
    pub has_leader: Option<bool>,
    /// `etcd_server_leader_changes_seen_total`: the first leader a member sees counts too.
    pub leader_changes_seen: Option<f64>,
    /// How long the member's process has run (`process_start_time_seconds`).
    pub uptime: Option<Duration>,
    /// p99 of `etcd_disk_wal_fsync_duration_seconds`, in seconds.
    pub wal_fsync_p99: Option<f64>,
    pub db_size: Option<f64>,
    pub quota: Option<f64>,
}

impl Signals {
    /// Leader changes per hour: all of them while the member is younger than an hour, its
    /// average rate over its uptime after that.
    pub fn leader_changes_per_hour(&self) -> Option<f64> {
        let changes = (self.leader_changes_seen? - 1.0).max(0.0);
        let hours = self.uptime?.as_secs_f64() / 3600.0;
        Some(if hours <= 1.0 {
            changes
        } else {
            changes / hours
        })
    }

    pub fn db_quota_percent(&self) -> Option<f64> {
        let (size, quota) = (self.db_size?, self.quota?);
        (quota > 0.0).then(|| 100.0 * size / quota)
    }
}

/// Reads the member's `/metrics` on its client port, through its forward.
pub async fn scrape<E: Executor + ?Sized>(exec: &E, node: &Node) -> Result<Signals, String> {
    let tls = read_tls(exec, node).await?;
    let text = http_get(exec, node, tls.as_ref(), "/metrics").await?;
    signals(&node.name, &text, SystemTime::now())
}

/// GET `path` from the member's client port (through its tunnel, with its client
/// certificate): /metrics, /version.
pub async fn http_get<E: Executor + ?Sized>(
    exec: &E,
    node: &Node,
    tls: Option<&TlsMaterial>,
    path: &str,
) -> Result<String, String> {
    let addr = exec
        .tunnel(node, node.etcd.client_port)
        .await
        .map_err(|e| e.0)?;
    let fail = |e: &dyn std::fmt::Display| format!("cannot read {path} of {}: {e}", node.name);
    let client = client(tls).map_err(|e| fail(&e))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The forward ends on the member's loopback, which its server certificate names.
    client
        .get(format!("{scheme}://127.0.0.1:{}{path}", addr.port()))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(&e))?
        .text()
        .await
        .map_err(|e| fail(&e))
}

fn client(tls: Option<&TlsMaterial>) -> Result<reqwest::Client, reqwest::Error> {
    crate::install_crypto();
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy();
    if let Some(t) = tls {
        let mut pem = t.cert.clone();
        pem.push(b'\n');
        pem.extend_from_slice(&t.key);
        let identity = reqwest::Identity::from_pem(&pem);
        pem.iter_mut().for_each(|b| *b = 0);
        b = b
            .tls_certs_only([reqwest::Certificate::from_pem(&t.ca)?])
            .identity(identity?);
    }
    b.build()
}

/// The signals in a Prometheus text exposition.
pub fn signals(node: &str, text: &str, now: SystemTime) -> Result<Signals, String> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("/metrics of {node} does not parse: {e}"))?;
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .and_then(|s| match s.value {
                Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
    };
    let started = value("process_start_time_seconds");
    let uptime = started.and_then(|s| {
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        Some(Duration::from_secs_f64((now - s).max(0.0)))
    });
    let fsync = scrape
        .samples
        .iter()
        .find(|s| s.metric == "etcd_disk_wal_fsync_duration_seconds")
        .and_then(|s| match &s.value {
            Value::Histogram(b) => quantile(0.99, b),
            _ => None,
        });
    Ok(Signals {
        node: node.to_string(),
        has_leader: value("etcd_server_has_leader").map(|v| v > 0.0),
        leader_changes_seen: value("etcd_server_leader_changes_seen_total"),
        uptime,
        wal_fsync_p99: fsync,
        db_size: value("etcd_mvcc_db_total_size_in_bytes"),
        quota: value("etcd_server_quota_backend_bytes"),
    })
}

/// The q-quantile of a cumulative histogram, interpolated inside its bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations.
fn quantile(q: f64, buckets: &[HistogramCount]) -> Option<f64> {
    let mut b: Vec<&HistogramCount> = buckets.iter().collect();
    b.sort_by(|x, y| x.less_than.total_cmp(&y.less_than));
    let total = b.last()?.count;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for x in b {
        if x.count >= rank {
            if x.less_than.is_infinite() {
                // Beyond the largest finite bucket: that bound is all that is known.
                return Some(lower);
            }
            let inside = x.count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (x.less_than - lower) * frac);
        }
        (lower, below) = (x.less_than, x.count);
    }
    Some(lower)
}

/// Which signal a limit is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    DbQuota,
    WalFsync,
    LeaderChanges,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::DbQuota, Signal::WalFsync, Signal::LeaderChanges];

    pub fn name(self) -> &'static str {
        match self {
            Signal::DbQuota => "db_quota_percent",
            Signal::WalFsync => "wal_fsync_p99_ms",
            Signal::LeaderChanges => "leader_changes_per_hour",
        }
    }
}

/// The limits a plan sets, and which of them refuse (the others warn). A member without a
/// leader always refuses.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub db_quota_percent: f64,
    pub wal_fsync_p99_ms: f64,
    pub leader_changes_per_hour: f64,
    pub refuse: Vec<Signal>,
}

impl Default for Gate {
    /// The usual alerting thresholds: a db past 75% of its quota refuses (the next hours of
    /// writes may raise NOSPACE); slow fsyncs and leader changes warn.
    fn default() -> Gate {
        Gate {
            db_quota_percent: 75.0,
            wal_fsync_p99_ms: 100.0,
            leader_changes_per_hour: 0.0,
            refuse: vec![Signal::DbQuota],
        }
    }
}

/// What the gate found: one line per member, and what refuses or warns.
#[derive(Debug, Default)]
pub struct Verdict {
    pub lines: Vec<String>,
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

impl Gate {
    pub fn judge(&self, members: &[Signals]) -> Verdict {
        let mut v = Verdict::default();
        for m in members {
            let fmt = |x: Option<f64>, unit: &str| {
                x.map_or("unknown".to_string(), |x| format!("{x:.1}{unit}"))
            };
            v.lines.push(format!(
                "{}: has leader {}, leader changes {}/h, WAL fsync p99 {}, db {} of quota",
                m.node,
                m.has_leader
                    .map_or("unknown", |l| if l { "yes" } else { "NO" }),
                fmt(m.leader_changes_per_hour(), ""),
                fmt(m.wal_fsync_p99.map(|s| s * 1000.0), " ms"),
                fmt(m.db_quota_percent(), "%"),
            ));
            if m.has_leader == Some(false) {
                v.refusals.push(format!(
                    "{}: etcd_server_has_leader is 0: no leader",
                    m.node
                ));
            }
            let checks = [
                (
                    Signal::DbQuota,
                    m.db_quota_percent(),
                    self.db_quota_percent,
                    "% of its quota (etcd_mvcc_db_total_size_in_bytes / etcd_server_quota_backend_bytes)",
                ),
                (
                    Signal::WalFsync,
                    m.wal_fsync_p99.map(|s| s * 1000.0),
                    self.wal_fsync_p99_ms,
                    " ms WAL fsync p99 (etcd_disk_wal_fsync_duration_seconds): a slow disk",
                ),
                (
                    Signal::LeaderChanges,
                    m.leader_changes_per_hour(),
                    self.leader_changes_per_hour,
                    " leader changes per hour (etcd_server_leader_changes_seen_total)",
                ),
            ];
            for (signal, value, max, what) in checks {
                let Some(value) = value else { continue };
                if value > max {
                    let text = format!(
                        "{}: {value:.1}{what}, above the limit {max} ({})",
                        m.node,
                        signal.name()
                    );
                    if self.refuse.contains(&signal) {
                        v.refusals.push(text);
                    } else {
                        v.warnings.push(text);
                    }
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines etcd 3.6 exposes for these signals (names, types, bucket bounds), cut down.
    const METRICS: &str = "\
# HELP etcd_server_has_leader Whether or not a leader exists. 1 is existence, 0 is not.
# TYPE etcd_server_has_leader gauge
etcd_server_has_leader 1
# TYPE etcd_server_leader_changes_seen_total counter
etcd_server_leader_changes_seen_total 3
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.7646e+09
# TYPE etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_bytes 1.3e+07
# TYPE etcd_server_quota_backend_bytes gauge
etcd_server_quota_backend_bytes 1.6777216e+07
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 50
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.128\"} 90
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.256\"} 100
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 100
etcd_disk_wal_fsync_duration_seconds_sum 3.2
etcd_disk_wal_fsync_duration_seconds_count 100
";

    #[test]
    fn signals_are_read_from_the_exposition() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_600_000 + 1800);
        let s = signals("cp1", METRICS, now).unwrap();
        assert_eq!(s.has_leader, Some(true));
        assert_eq!(s.uptime, Some(Duration::from_secs(1800)));
        // Half an hour up: every change but the first leader counts.
        assert_eq!(s.leader_changes_per_hour(), Some(2.0));
        // The 99th of 100 fsyncs lies in (0.128, 0.256], 9/10 of the way.
        let p99 = s.wal_fsync_p99.unwrap();
        assert!((p99 - 0.2432).abs() < 1e-9, "{p99}");
        assert!((s.db_quota_percent().unwrap() - 77.486).abs() < 0.01);
    }

    #[test]
    fn a_long_running_member_is_judged_by_its_rate() {
        let s = Signals {
            leader_changes_seen: Some(25.0),
            uptime: Some(Duration::from_secs(48 * 3600)),
            ..Signals::default()
        };
        assert_eq!(s.leader_changes_per_hour(), Some(0.5));
    }

    #[test]
    fn the_gate_refuses_what_the_plan_says_and_warns_on_the_rest() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_600_000 + 1800);
        let s = signals("cp1", METRICS, now).unwrap();
        let v = Gate::default().judge(std::slice::from_ref(&s));
        assert_eq!(v.refusals.len(), 1, "{v:?}");
        assert!(v.refusals[0].contains("77.5% of its quota"), "{v:?}");
        assert_eq!(v.warnings.len(), 2, "fsync and leader changes warn: {v:?}");
        let lenient = Gate {
            db_quota_percent: 80.0,
            refuse: Signal::ALL.to_vec(),
            ..Gate::default()
        };
        let v = lenient.judge(std::slice::from_ref(&s));
        assert_eq!(v.refusals.len(), 2, "{v:?}");
        let leaderless = Signals {
            has_leader: Some(false),
            ..s
        };
        let v = Gate::default().judge(&[leaderless]);
        assert!(v.refusals.iter().any(|r| r.contains("no leader")), "{v:?}");
    }

    #[test]
    fn quantiles_follow_prometheus() {
        let h = |b: &[(f64, f64)]| -> Vec<HistogramCount> {
            b.iter()
                .map(|&(less_than, count)| HistogramCount { less_than, count })
                .collect()
        };
        assert_eq!(
            quantile(0.99, &h(&[(1.0, 0.0), (f64::INFINITY, 0.0)])),
            None
        );
        assert_eq!(
            quantile(0.5, &h(&[(1.0, 10.0), (f64::INFINITY, 10.0)])),
            Some(0.5)
        );
        // Past the last finite bound: that bound.
        assert_eq!(
            quantile(0.99, &h(&[(1.0, 1.0), (f64::INFINITY, 10.0)])),
            Some(1.0)
        );
    }
}
