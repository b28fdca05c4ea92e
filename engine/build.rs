//! Build script. runbook generates nothing itself; the script exists so that cargo fetches the
//! protoc-bin-vendored build-dependency before anything compiles: `.cargo/protoc` hands that
//! protoc to etcd-client's code generation on machines that have none installed.

fn main() {
    println!("cargo:rerun-if-changed=engine/build.rs");
}
