fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/crius.proto");
    // The descriptor set lets tests build messages from proto3 JSON
    // (prost-reflect), e.g. to replay a recording of what kubelet sent.
    let descriptor_set =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("cri_descriptor_set.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(descriptor_set)
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(false)
        // Messages carrying registry credentials: their Debug (src/lib.rs)
        // shows no secret.
        .skip_debug([".runtime.v1.AuthConfig", ".crius.v1.PullImageRequest"])
        .compile_protos(&["proto/api.proto", "proto/crius.proto"], &["proto"])?;
    Ok(())
}
