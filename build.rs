//! Compiles the public protobuf contract with protox (pure Rust, so no `protoc`
//! is needed), keeps the encoded descriptor set for gRPC reflection and
//! generates the tonic/prost code from it.

use std::{env, fs, path::PathBuf};

use anyhow::Context as _;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["proto/deployer/v1/deployer.proto"];
const DESCRIPTOR_SET: &str = "deployer_descriptor.bin";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR is not set")?);

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true);
    for file in PROTO_FILES {
        compiler
            .open_file(file)
            .with_context(|| format!("compiling {file}"))?;
    }

    let descriptor_path = out_dir.join(DESCRIPTOR_SET);
    fs::write(&descriptor_path, compiler.encode_file_descriptor_set())
        .with_context(|| format!("writing {}", descriptor_path.display()))?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())
        .context("generating gRPC code")?;

    Ok(())
}
