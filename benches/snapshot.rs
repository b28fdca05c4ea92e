//! `cargo bench --bench snapshot` (Linux, root): the native snapshot reader and `snapshot save`
//! against etcd's own tools, on a snapshot of about 1.1 GB from a 1-node lab (etcd 3.6).
//!   - `runbook snapshot status` vs `etcdutl snapshot status` vs `sha256sum`: wall time, peak RSS;
//!   - peak RSS of `runbook snapshot status` on a 20 kB file vs the 1.1 GB one (flat memory);
//!   - `runbook snapshot save` (through an SSH forward) vs `etcdctl snapshot save` (direct):
//!     throughput;
//!   - `runbook snapshot diff` of that snapshot and a second one taken after 100 values were
//!     rewritten, 50 deleted and 50 added: wall time and peak RSS, against reading both files;
//!   - `runbook snapshot get` of one resource (the lab's ConfigMaps, as YAML) from the 1.1 GB
//!     snapshot against one read of the file, and its peak RSS against the 20 kB one's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{inventory_field, ok, runbook};
use std::time::Instant;

const LAB: &str = "bsnap";
const VALUES: usize = 1100;

fn in_node(script: &str) -> Vec<u8> {
    common::in_node(LAB, "cp1", script)
}

/// Wall seconds and peak RSS (MB) of a command, by /usr/bin/time.
fn measure(args: &[&str]) -> (f64, f64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text.lines().last().unwrap_or("");
    let mut f = last.split_whitespace();
    let wall: f64 = f.next().unwrap().parse().unwrap();
    let kb: f64 = f.next().unwrap().parse().unwrap();
    (wall, kb / 1024.0)
}

fn main() {
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let inventory = PathBuf::from(
        String::from_utf8(ok(
            runbook().args(["lab", "up", "--name", LAB, "--etcd", "3.6", "--nodes", "1"]),
            "lab up",
        ))
        .unwrap()
        .trim(),
    );
    let exe = env!("CARGO_BIN_EXE_runbook");
    let small = work.path().join("small.db");
    in_node(
        "etcdctl put /small v >/dev/null && etcdctl snapshot save /var/lib/runbook/small.db >/dev/null",
    );
    std::fs::write(
        &small,
        in_node("cat /var/lib/runbook/small.db; rm /var/lib/runbook/small.db"),
    )
    .unwrap();

    let t = Instant::now();
    in_node(&format!(
        "head -c 1000000 /dev/urandom > /tmp/v && for i in $(seq 1 {VALUES}); do etcdctl put /big/$i < /tmp/v >/dev/null || exit 1; done"
    ));
    println!(
        "filled etcd with {VALUES} x 1 MB in {:.0}s",
        t.elapsed().as_secs_f64()
    );

    // Save: runbook through the SSH forward (AES-GCM first, as runbook sets it, and
    // ChaCha20-Poly1305 first, OpenSSH's default, through an operator config that says so),
    // then etcdctl straight to the member.
    let config = inventory_field(&inventory, "/ssh/config_file");
    let chacha_config = work.path().join("ssh_config_chacha");
    std::fs::write(
        &chacha_config,
        format!("Include {config}\nHost *\n  Ciphers chacha20-poly1305@openssh.com\n"),
    )
    .unwrap();
    let chacha_inventory = work.path().join("inventory-chacha.yaml");
    std::fs::write(
        &chacha_inventory,
        std::fs::read_to_string(&inventory)
            .unwrap()
            .replace(&config, chacha_config.to_str().unwrap()),
    )
    .unwrap();
    let save = |inv: &Path, dest: &Path| {
        let t = Instant::now();
        ok(
            runbook()
                .args(["snapshot", "save"])
                .arg(dest)
                .arg("-i")
                .arg(inv),
            "runbook snapshot save",
        );
        t.elapsed().as_secs_f64()
    };
    let etcdctl = inventory_field(&inventory, "/etcd/etcdctl");
    let addr = inventory_field(&inventory, "/nodes/0/address");
    let pki = inventory
        .parent()
        .unwrap()
        .join("nodes/cp1/etc-kubernetes/pki/etcd");
    let theirs = work.path().join("theirs.db");
    let etcdctl_save = || {
        let _ = std::fs::remove_file(&theirs);
        let t = Instant::now();
        ok(
            Command::new(&etcdctl)
                .arg(format!("--endpoints=https://{addr}:2379"))
                .arg(format!("--cacert={}", pki.join("ca.crt").display()))
                .arg(format!("--cert={}", pki.join("server.crt").display()))
                .arg(format!("--key={}", pki.join("server.key").display()))
                .args(["snapshot", "save"])
                .arg(&theirs),
            "etcdctl snapshot save",
        );
        t.elapsed().as_secs_f64()
    };
    // Interleaved, three times each, the fastest of each kept: the first read of etcd's file
    // warms the page cache for whatever comes next, and each file is removed before the next
    // save so that no run finds another's dirty pages still to be written.
    let ours = work.path().join("ours.db");
    let chacha = work.path().join("chacha.db");
    let (mut chacha_secs, mut ours_secs, mut theirs_secs) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..3 {
        let _ = std::fs::remove_file(&chacha);
        chacha_secs = chacha_secs.min(save(&chacha_inventory, &chacha));
        std::fs::remove_file(&chacha).unwrap();
        let _ = std::fs::remove_file(&ours);
        ours_secs = ours_secs.min(save(&inventory, &ours));
        theirs_secs = theirs_secs.min(etcdctl_save());
    }
    std::fs::remove_file(&theirs).unwrap();
    let size = std::fs::metadata(&ours).unwrap().len() as f64 / 1e6;
    println!(
        "snapshot save of {size:.0} MB with ChaCha20-Poly1305 first (OpenSSH's default): runbook {chacha_secs:.2}s ({:.0} MB/s); ratio runbook/etcdctl {:.2}",
        size / chacha_secs,
        chacha_secs / theirs_secs
    );
    println!(
        "snapshot save of {size:.0} MB: runbook {ours_secs:.2}s ({:.0} MB/s, includes preflight, .sha256 and full verification), etcdctl {theirs_secs:.2}s ({:.0} MB/s); time ratio runbook/etcdctl {:.2}, throughput {:.2}x etcdctl's",
        size / ours_secs,
        size / theirs_secs,
        ours_secs / theirs_secs,
        theirs_secs / ours_secs
    );

    // Status: native reader vs etcdutl vs sha256sum on the same file, warm cache.
    let big = ours.to_str().unwrap();
    let etcdutl = inventory_field(&inventory, "/etcd/etcdutl");
    let _ = measure(&["cat", big]);
    let (rw, rm) = measure(&[exe, "snapshot", "status", big]);
    let (ew, em) = measure(&[&etcdutl, "snapshot", "status", big]);
    let (sw, sm) = measure(&["sha256sum", big]);
    let (_, small_rss) = measure(&[exe, "snapshot", "status", small.to_str().unwrap()]);
    println!("snapshot status of {size:.0} MB:");
    println!(
        "  runbook snapshot status  {rw:.2}s  peak RSS {rm:.1} MB   (on a 20 kB file: {small_rss:.1} MB)"
    );
    println!(
        "  etcdutl snapshot status  {ew:.2}s  peak RSS {em:.1} MB   ratio runbook/etcdutl {:.2}",
        rw / ew
    );
    println!(
        "  sha256sum                {sw:.2}s  peak RSS {sm:.1} MB   ratio runbook/sha256sum {:.2}",
        rw / sw
    );

    // Diff: a second snapshot after some churn, compared with the first.
    in_node(
        "for i in $(seq 1 100); do etcdctl put /big/$i < /tmp/v >/dev/null; done; \
         for i in $(seq 101 150); do etcdctl del /big/$i >/dev/null; done; \
         for i in $(seq 1 50); do etcdctl put /new/$i < /tmp/v >/dev/null; done; \
         etcdctl snapshot save /var/lib/runbook/second.db >/dev/null",
    );
    let second = work.path().join("second.db");
    let mut f = std::fs::File::create(&second).unwrap();
    let mut cat = Command::new(exe)
        .args([
            "lab",
            "exec",
            "--name",
            LAB,
            "cp1",
            "--",
            "cat",
            "/var/lib/runbook/second.db",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::copy(cat.stdout.as_mut().unwrap(), &mut f).unwrap();
    assert!(cat.wait().unwrap().success());
    let second = second.to_str().unwrap();
    let (read_both, _) = measure(&["sh", "-c", &format!("cat {big} {second} > /dev/null")]);
    let (dw, dm) = measure(&[exe, "snapshot", "diff", big, second]);
    let both = (std::fs::metadata(big).unwrap().len() + std::fs::metadata(second).unwrap().len())
        as f64
        / 1e6;
    println!("snapshot diff of {size:.0} MB and {:.0} MB:", both - size);
    println!("  runbook snapshot diff    {dw:.2}s  peak RSS {dm:.1} MB");
    println!(
        "  cat both > /dev/null     {read_both:.2}s                    ratio diff/read {:.2}",
        dw / read_both
    );

    // Get: one resource out of the big snapshot (one pass, only that resource kept).
    let (read_one, _) = measure(&["cat", big]);
    let (gw, gm) = measure(&[exe, "snapshot", "get", big, "configmaps", "-o", "yaml"]);
    let (_, small_gm) = measure(&[
        exe,
        "snapshot",
        "get",
        small.to_str().unwrap(),
        "configmaps",
        "-o",
        "yaml",
    ]);
    println!("snapshot get configmaps -o yaml from {size:.0} MB:");
    println!(
        "  runbook snapshot get     {gw:.2}s  peak RSS {gm:.1} MB   (on a 20 kB file: {small_gm:.1} MB)"
    );
    println!(
        "  cat > /dev/null          {read_one:.2}s                    ratio get/read {:.2}",
        gw / read_one
    );

    ok(runbook().args(["lab", "down", "--name", LAB]), "lab down");
}
