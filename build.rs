fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: building coordlab needs no system protobuf compiler.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    // Maps as BTreeMaps: a HashMap's order would make encoded messages (and the
    // simulation's traces) differ from run to run.
    tonic_build::configure().btree_map(["."]).compile_protos(
        &[
            "proto/coordlab.proto",
            "proto/bridge.proto",
            "proto/etcd/etcdserverpb/rpc.proto",
            "proto/etcd/v3lockpb/v3lock.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
