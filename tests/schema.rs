//! The committed JSON Schemas match the binary, and every bundled plan and example
//! inventory validates against them and compiles.

mod common;

use common::{root, runbook};

fn yaml_as_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no YAML files in {dir}");
    v
}

#[test]
fn committed_schemas_are_current() {
    for kind in ["plan", "inventory"] {
        let generated = runbook(&["schema", kind]);
        assert_eq!(generated.code, 0);
        let committed =
            std::fs::read_to_string(root().join(format!("schemas/{kind}.schema.json"))).unwrap();
        assert!(
            generated.stdout == committed,
            "schemas/{kind}.schema.json is stale: run `cargo run -- schema {kind} > schemas/{kind}.schema.json`"
        );
    }
}

fn validator(kind: &str) -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!("schemas/{kind}.schema.json"))).unwrap(),
    )
    .unwrap();
    jsonschema::draft7::new(&schema).expect("schema compiles")
}

#[test]
fn bundled_files_validate_against_the_schemas() {
    let plan = validator("plan");
    for p in files("plans") {
        let errors: Vec<String> = plan
            .iter_errors(&yaml_as_json(&p))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
        let first = std::fs::read_to_string(&p).unwrap();
        assert!(first.starts_with("# yaml-language-server: $schema=../schemas/plan.schema.json"));
    }
    let inventory = validator("inventory");
    for p in files("examples") {
        let errors: Vec<String> = inventory
            .iter_errors(&yaml_as_json(&p))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", p.display());
        let first = std::fs::read_to_string(&p).unwrap();
        assert!(
            first.starts_with("# yaml-language-server: $schema=../schemas/inventory.schema.json")
        );
    }
}

#[test]
fn schema_rejects_what_the_loader_rejects() {
    let plan = validator("plan");
    let bad = serde_json::json!({
        "name": "x",
        "steps": [{ "id": "a", "action": "etcd.restore", "with": { "snapshot": "/s", "tokn": "t" } }]
    });
    assert!(
        !plan.is_valid(&bad),
        "a misspelt action argument must fail the schema"
    );
    let unknown_action =
        serde_json::json!({ "name": "x", "steps": [{ "id": "a", "action": "etcd.restor" }] });
    assert!(!plan.is_valid(&unknown_action));
}

#[test]
fn every_plan_compiles_with_every_matching_example() {
    for (plan, inv) in [
        ("plans/etcd-restore-ha.yaml", "examples/kubeadm-ha-3.yaml"),
        ("plans/etcd-restore-ha.yaml", "examples/kubeadm-ha-5.yaml"),
        (
            "plans/etcd-restore-single.yaml",
            "examples/kubeadm-single.yaml",
        ),
    ] {
        let r = runbook(&[
            "validate",
            plan,
            "-i",
            inv,
            "--set",
            "snapshot=/backups/etcd.db",
        ]);
        assert_eq!(r.code, 0, "{plan} with {inv}:\n{}", r.stderr);
    }
    for inv in ["examples/kubeadm-ha-3.yaml", "examples/kubeadm-ha-5.yaml"] {
        let r = runbook(&[
            "validate",
            "plans/etcd-backup.yaml",
            "-i",
            inv,
            "--set",
            "stamp=x",
            "--set",
            "copy_to=backup1:/srv/etcd",
        ]);
        assert_eq!(r.code, 0, "etcd-backup with {inv}:\n{}", r.stderr);
    }
    // Every example is covered by some plan above.
    for p in files("examples") {
        let name = format!("examples/{}", p.file_name().unwrap().to_string_lossy());
        let r = runbook(&[
            "validate",
            "plans/etcd-restore-ha.yaml",
            "-i",
            &name,
            "--set",
            "snapshot=/backups/etcd.db",
        ]);
        assert_eq!(r.code, 0, "{name}:\n{}", r.stderr);
    }
}

/// engine/kube/types.json, the Kubernetes type shapes `snapshot get` decodes with, is what
/// engine/kube/schema writes from the Kubernetes Go types its go.sum pins.
#[test]
fn kubernetes_type_shapes_are_current() {
    let go = ["/usr/local/go/bin/go", "/usr/lib/go/bin/go"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "go".into());
    let dir = root().join("engine/kube/schema");
    let out = std::process::Command::new(go)
        .args(["run", "."])
        .current_dir(&dir)
        .env("GOFLAGS", "-mod=readonly")
        .output()
        .expect("Go builds the lab's servers and this generator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(root().join("engine/kube/types.json")).unwrap();
    assert!(
        out.stdout == committed,
        "engine/kube/types.json is stale: run `(cd engine/kube/schema && go run . > ../types.json)`"
    );
}
