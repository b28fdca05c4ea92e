//! Build script. It generates nothing itself: it exists so that cargo fetches the
//! protoc-bin-vendored build-dependency before anything compiles (`.cargo/protoc` hands that
//! protoc to etcd-client's code generation on machines that have none installed), and so that
//! an edited plan under plans/ rebuilds the binary that embeds it (include_dir's macro cannot
//! tell cargo about the files it reads on a stable toolchain).

fn main() {
    println!("cargo:rerun-if-changed=engine/build.rs");
    println!("cargo:rerun-if-changed=plans");
}
