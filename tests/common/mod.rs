//! Shared helpers for the integration tests: run the real binary from the repository root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Output of one `runbook` invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn runbook(args: &[&str]) -> Run {
    runbook_in(&root(), args)
}

pub fn runbook_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("runbook runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Compile-time assurance that a run did not crash: a panic exits 101.
pub fn assert_no_panic(r: &Run) {
    assert_ne!(r.code, 101, "runbook panicked:\n{}", r.stderr);
    assert!(
        !r.stderr.contains("panicked at"),
        "runbook panicked:\n{}",
        r.stderr
    );
}

/// Like `runbook_in`, but a run still going after `secs` is killed and reported as `None`
/// (a command blocked on a FIFO, say), so a hang fails the test instead of stalling it.
pub fn runbook_within(dir: &Path, args: &[&str], secs: u64) -> Option<Run> {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runbook runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Some(Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    })
}

/// A scratch directory with `plan.yaml` (one no-op step on n1) and `inv.yaml` (cluster
/// `cluster`, n1 on 127.0.0.1 port 1, which refuses at once): a real run that stops at
/// connecting, with a run directory.
pub fn unreachable_scratch(cluster: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.yaml"),
        "name: t\nsteps:\n  - { id: a, on: n1, run: 'true' }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("inv.yaml"),
        format!("cluster: {cluster}\netcd: {{ version: \"3.5.16\" }}\nssh: {{ port: 1, connect_timeout: 2 }}\nnodes:\n  - {{ name: n1, address: 127.0.0.1, roles: [etcd] }}\n"),
    )
    .unwrap();
    dir
}

/// Fails unless `xml` is valid against tests/fixtures/junit/junit.xsd (the shape of Jenkins'
/// junit-10.xsd), checked by Python's xmlschema, which tests/run.sh installs.
pub fn assert_valid_junit(xml: &str) {
    use std::io::Write;
    let xsd = root().join("tests/fixtures/junit/junit.xsd");
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, xmlschema\nxmlschema.XMLSchema(sys.argv[1]).validate(sys.stdin.read())",
        ])
        .arg(&xsd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (tests/run.sh installs xmlschema for it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'xmlschema'"),
        "xmlschema is missing: `pip3 install xmlschema` (tests/run.sh does)"
    );
    assert!(out.status.success(), "invalid JUnit XML:\n{stderr}\n{xml}");
}

/// A real S3 API on loopback: moto's server (PyPI `moto[server]`, which tests/run.sh
/// installs), with one bucket, `backups`; stopped when dropped.
pub struct S3Server {
    child: std::process::Child,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        // A free port, given back to moto at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // As a module of the python3 that has it, not a script on PATH that pip may not link.
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs moto's server (tests/run.sh installs moto[server] from PyPI)");
        let mut s = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "moto's server exited ({status}): is moto[server] installed? (tests/run.sh installs it)"
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto's server did not listen in 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        s.python("s3.create_bucket(Bucket='backups')");
        s
    }

    /// The settings runbook reads, as an operator would export them (and nothing from this
    /// machine's own AWS files).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config".into()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials".into(),
            ),
        ]
    }

    /// Runs Python with boto3 (moto's own dependency) and `s3`, a client of this server;
    /// returns what it printed.
    pub fn python(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1')\n{code}\n",
            self.endpoint
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
