//! TLS registries: CAs from hosts.toml or a certs.d directory, skip_verify.

use crius_core::Error;
use crius_registry::{Fetcher, RegistryConfig, media, parse_reference};
use crius_testkit::images as ti;

use crate::common::{AuthRegistry, amd64, drain, images, resolve};

fn config_with(dir: &tempfile::TempDir) -> RegistryConfig {
    RegistryConfig {
        hosts_dir: Some(dir.path().to_owned()),
        ..RegistryConfig::default()
    }
}

#[tokio::test]
async fn tls_registry_with_ca_or_skip_verify() -> anyhow::Result<()> {
    let images = images();
    let registry = AuthRegistry::start_tls(images.registry.storage_dir())?;
    let ca = registry.ca.clone().expect("a CA");
    let reference = format!("{}/{}", registry.addr, ti::MULTILAYER);
    let host_dir = |dir: &tempfile::TempDir| -> anyhow::Result<std::path::PathBuf> {
        let d = dir.path().join(&registry.addr);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };

    // https without the CA: the certificate is not trusted.
    let dir = tempfile::tempdir()?;
    std::fs::write(
        host_dir(&dir)?.join("hosts.toml"),
        format!("server = \"https://{}\"\n", registry.addr),
    )?;
    match resolve(&config_with(&dir), &reference).await {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains(&registry.addr), "{msg}");
            assert!(msg.contains("TLS handshake failed"), "{msg}");
        }
        other => panic!("{other:?}"),
    }

    // The CA by absolute path, by path relative to the host directory, and
    // as a certs.d *.crt file without hosts.toml.
    let cases = [
        format!("server = \"https://{}\"\nca = {:?}\n", registry.addr, ca),
        format!(
            "server = \"https://{}\"\nca = [\"my-ca.pem\"]\n",
            registry.addr
        ),
        String::new(),
        format!(
            "server = \"https://{}\"\nskip_verify = true\n",
            registry.addr
        ),
    ];
    for hosts_toml in cases {
        let dir = tempfile::tempdir()?;
        let d = host_dir(&dir)?;
        if hosts_toml.is_empty() {
            std::fs::copy(&ca, d.join("ca.crt"))?;
        } else {
            std::fs::copy(&ca, d.join("my-ca.pem"))?;
            std::fs::write(d.join("hosts.toml"), &hosts_toml)?;
        }
        let config = config_with(&dir);
        let fetcher = Fetcher::new(&config, &parse_reference(&reference)?, None)?;
        let r = fetcher
            .resolve(&amd64())
            .await
            .map_err(|e| anyhow::anyhow!("{hosts_toml:?}: {e}"))?;
        assert_eq!(r.image_id(), images.image_id(ti::MULTILAYER));
        let (data, err) = drain(fetcher.blob(&r.layers[2]).await?).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            media::sha256_digest(&data),
            r.layers[2].digest().to_string()
        );
    }
    Ok(())
}
