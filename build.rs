fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: building coordlab needs no system protobuf compiler.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    tonic_build::configure().compile_protos(
        &[
            "proto/coordlab.proto",
            "proto/etcd/etcdserverpb/rpc.proto",
            "proto/etcd/v3lockpb/v3lock.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
