//! Authentication: Basic against a docker-registry with htpasswd; the
//! Bearer flows against a fake token server in front of the real registry.

use crius_core::Error;
use crius_registry::{Credentials, Fetcher, RegistryConfig, parse_reference};
use crius_testkit::images as ti;

use crate::common::{
    AUTH_PASSWORD, AUTH_USER, AuthRegistry, FakeServer, Reply, amd64, drain, images, proxy,
    resolve_with,
};

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: user.to_owned(),
        password: password.to_owned(),
    }
}

#[tokio::test]
async fn basic_auth_with_htpasswd() -> anyhow::Result<()> {
    let images = images();
    let registry = AuthRegistry::start(images.registry.storage_dir())?;
    let reference = format!("{}/{}", registry.addr, ti::BUSYBOX);
    let config = RegistryConfig::default(); // loopback: plain http

    // Request credentials.
    let r = resolve_with(&config, &reference, Some(basic(AUTH_USER, AUTH_PASSWORD))).await?;
    assert_eq!(r.image_id(), images.image_id(ti::BUSYBOX));

    // Blobs reuse the authorization.
    let parsed = parse_reference(&reference)?;
    let fetcher = Fetcher::new(&config, &parsed, Some(basic(AUTH_USER, AUTH_PASSWORD)))?;
    let r = fetcher.resolve(&amd64()).await?;
    let (_, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert!(err.is_none(), "{err:?}");

    // Config credentials for the host, when the request has none.
    let mut with_auths = RegistryConfig::default();
    with_auths
        .auths
        .insert(registry.addr.clone(), basic(AUTH_USER, AUTH_PASSWORD));
    resolve_with(&with_auths, &reference, None).await?;
    // The request's credentials come first.
    match resolve_with(&with_auths, &reference, Some(basic(AUTH_USER, "wrong"))).await {
        Err(Error::Unauthenticated(msg)) => assert!(msg.contains(&registry.addr), "{msg}"),
        other => panic!("{other:?}"),
    }

    // Wrong user, wrong password, none.
    for creds in [
        Some(basic("mallory", AUTH_PASSWORD)),
        Some(basic(AUTH_USER, "x")),
        None,
    ] {
        match resolve_with(&config, &reference, creds.clone()).await {
            Err(Error::Unauthenticated(msg)) => {
                assert!(msg.contains(&registry.addr), "{creds:?}: {msg}")
            }
            other => panic!("{creds:?}: {other:?}"),
        }
    }
    Ok(())
}

/// A registry that wants a bearer token from its own `/token` endpoint:
/// `GET` with Basic `alice`/`s3cret-pass` gives `tok-basic`, a `POST` with
/// refresh token `refresh-1` gives `tok-refresh`, and `tok-static` is
/// accepted as it is. With a valid token, requests go to the real registry.
async fn token_registry() -> FakeServer {
    let real = images().addr();
    FakeServer::start(move |req| {
        let host = req.header("host").unwrap_or_default().to_owned();
        if req.path() == "/token" {
            if req.method == "GET" {
                let want = format!(
                    "Basic {}",
                    base64_encode(&format!("{AUTH_USER}:{AUTH_PASSWORD}"))
                );
                if req.header("authorization") == Some(want.as_str()) {
                    return Reply::ok("application/json", r#"{"token":"tok-basic","expires_in":300}"#);
                }
                return Reply::status(401);
            }
            let form = String::from_utf8_lossy(&req.body).into_owned();
            if form.contains("grant_type=refresh_token") && form.contains("refresh_token=refresh-1") {
                return Reply::ok("application/json", r#"{"access_token":"tok-refresh"}"#);
            }
            return Reply::status(401);
        }
        let authorized = matches!(
            req.header("authorization"),
            Some("Bearer tok-basic" | "Bearer tok-refresh" | "Bearer tok-static")
        );
        if !authorized {
            return Reply::status(401).header(
                "WWW-Authenticate",
                &format!(
                    "Bearer realm=\"http://{host}/token\",service=\"fake-registry\",scope=\"repository:crius-test/busybox:pull\""
                ),
            );
        }
        proxy(&real, req)
    })
    .await
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn bearer_token_with_basic_credentials() -> anyhow::Result<()> {
    let server = token_registry().await;
    let reference = format!("{}/{}", server.addr, ti::BUSYBOX);
    let config = RegistryConfig::default();
    let parsed = parse_reference(&reference)?;
    let fetcher = Fetcher::new(&config, &parsed, Some(basic(AUTH_USER, AUTH_PASSWORD)))?;
    let r = fetcher.resolve(&amd64()).await?;
    assert_eq!(r.image_id(), images().image_id(ti::BUSYBOX));
    let (_, err) = drain(fetcher.blob(&r.layers[0]).await?).await;
    assert!(err.is_none(), "{err:?}");
    let reqs = server.requests();
    let tokens: Vec<_> = reqs.iter().filter(|r| r.path() == "/token").collect();
    assert_eq!(tokens.len(), 1, "one token for the whole pull");
    assert_eq!(
        tokens[0].target,
        "/token?service=fake-registry&scope=repository%3Acrius-test%2Fbusybox%3Apull"
    );
    // Anonymous: the token endpoint refuses.
    match resolve_with(&config, &reference, None).await {
        Err(Error::Unauthenticated(msg)) => assert!(msg.contains(&server.addr), "{msg}"),
        other => panic!("{other:?}"),
    }
    match resolve_with(&config, &reference, Some(basic(AUTH_USER, "nope"))).await {
        Err(Error::Unauthenticated(msg)) => assert!(msg.contains(&server.addr), "{msg}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn identity_token_is_exchanged() -> anyhow::Result<()> {
    let server = token_registry().await;
    let reference = format!("{}/{}", server.addr, ti::BUSYBOX);
    let r = resolve_with(
        &RegistryConfig::default(),
        &reference,
        Some(Credentials::IdentityToken("refresh-1".into())),
    )
    .await?;
    assert_eq!(r.image_id(), images().image_id(ti::BUSYBOX));
    let reqs = server.requests();
    let post = reqs
        .iter()
        .find(|r| r.path() == "/token")
        .expect("a token request");
    assert_eq!(post.method, "POST");
    assert_eq!(
        post.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = String::from_utf8_lossy(&post.body).into_owned();
    for field in [
        "grant_type=refresh_token",
        "refresh_token=refresh-1",
        "service=fake-registry",
        "client_id=crius",
        "scope=repository%3Acrius-test%2Fbusybox%3Apull",
    ] {
        assert!(
            form.split('&').any(|f| f == field),
            "{field} missing from {form}"
        );
    }
    match resolve_with(
        &RegistryConfig::default(),
        &reference,
        Some(Credentials::IdentityToken("expired".into())),
    )
    .await
    {
        Err(Error::Unauthenticated(_)) => {}
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn registry_token_is_sent_as_is() -> anyhow::Result<()> {
    let server = token_registry().await;
    let reference = format!("{}/{}", server.addr, ti::BUSYBOX);
    let r = resolve_with(
        &RegistryConfig::default(),
        &reference,
        Some(Credentials::RegistryToken("tok-static".into())),
    )
    .await?;
    assert_eq!(r.image_id(), images().image_id(ti::BUSYBOX));
    let reqs = server.requests();
    assert!(reqs.iter().all(|r| r.path() != "/token"));
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-static"))
    );
    match resolve_with(
        &RegistryConfig::default(),
        &reference,
        Some(Credentials::RegistryToken("tok-bad".into())),
    )
    .await
    {
        Err(Error::Unauthenticated(msg)) => assert!(msg.contains(&server.addr), "{msg}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn forbidden_is_permission_denied() -> anyhow::Result<()> {
    let server = FakeServer::start(|_| {
        Reply::status(403).body(r#"{"errors":[{"code":"DENIED","message":"no pulls for you"}]}"#)
    })
    .await;
    match resolve_with(
        &RegistryConfig::default(),
        &format!("{}/a/b:c", server.addr),
        None,
    )
    .await
    {
        Err(Error::PermissionDenied(msg)) => {
            assert!(msg.contains(&server.addr), "{msg}");
            assert!(msg.contains("no pulls for you"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}
