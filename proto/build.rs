//! Compiles the `.proto` files under this crate into tonic/prost code in `OUT_DIR`.
//!
//! The protobuf compiler is `protox` (pure Rust), so no system `protoc` is needed. Each entry of
//! [`PROTOS`] is a path relative to this crate's directory, which is also the only include root:
//! imports are written `import "rocketgate/cluster/v1/...";`. Add a file to the list to compile it
//! (the RocketMQ v2 protos go under `apache/rocketmq/v2/`); every package gets one generated
//! `<package>.rs` that `src/lib.rs` includes.

use std::path::PathBuf;

/// The files to compile, relative to the crate directory (also the include root).
const PROTOS: &[&str] = &[
    "rocketgate/cluster/v1/nameserver.proto",
    "rocketgate/cluster/v1/admin.proto",
    "rocketgate/cluster/v1/access.proto",
    "rocketgate/cluster/v1/replication.proto",
    "rocketgate/cluster/v1/controller.proto",
    "apache/rocketmq/v2/definition.proto",
    "apache/rocketmq/v2/service.proto",
];

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let descriptors = protox::compile(PROTOS, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
