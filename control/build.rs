//! Generates the gRPC server and client from `proto/podswitch/v1/control.proto`, the single
//! source of truth of the control API (needs `protoc`: Debian's protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/podswitch/v1/control.proto");
    tonic_prost_build::configure().compile_protos(&["proto/podswitch/v1/control.proto"], &["proto"])?;
    Ok(())
}
