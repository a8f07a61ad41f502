//! Generates the cluster RPC code from proto/swarm.proto with a pure-Rust protobuf
//! compiler (protox), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/swarm.proto");
    let fds = protox::compile(["proto/swarm.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
