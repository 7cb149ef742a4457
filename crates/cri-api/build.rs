fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/crius.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(false)
        // Messages carrying registry credentials: their Debug (src/lib.rs)
        // shows no secret.
        .skip_debug([".runtime.v1.AuthConfig", ".crius.v1.PullImageRequest"])
        .compile_protos(&["proto/api.proto", "proto/crius.proto"], &["proto"])?;
    Ok(())
}
