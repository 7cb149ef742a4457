//! Registry authentication: credentials, `WWW-Authenticate` challenges and
//! the token endpoint of the Bearer flow (Docker's token protocol and its
//! OAuth2 refresh-token variant).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use crius_core::{Error, Result};
use serde::Deserialize;
use url::Url;

/// The OAuth2 `client_id` crius presents.
pub const CLIENT_ID: &str = "crius";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// User name and password: sent with Basic auth, or to the token
    /// endpoint of a Bearer challenge.
    Basic { username: String, password: String },
    /// A bearer token sent as it is.
    RegistryToken(String),
    /// An OAuth2 refresh token, exchanged at the token endpoint of the
    /// Bearer challenge (`grant_type=refresh_token`).
    IdentityToken(String),
    #[default]
    Anonymous,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl Credentials {
    /// From the fields of a CRI `AuthConfig` (or crius' config): a registry
    /// token wins, then an identity token, then a user name and password
    /// (`auth` is base64 `user:password`, used when `username` is empty),
    /// else anonymous.
    pub fn from_parts(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Credentials> {
        if !registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(registry_token.to_owned()));
        }
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(identity_token.to_owned()));
        }
        if !username.is_empty() {
            return Ok(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            });
        }
        if !auth.is_empty() {
            // containerd refuses it too ("invalid decoded auth").
            let bad = || Error::invalid("auth", "auth is not base64 of user:password");
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
            let (user, pass) = decoded.split_once(':').ok_or_else(bad)?;
            return Ok(Credentials::Basic {
                username: user.to_owned(),
                password: pass.to_owned(),
            });
        }
        Ok(Credentials::Anonymous)
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercase scheme: `bearer`, `basic`.
    pub scheme: String,
    /// Parameters by lowercase name.
    pub params: HashMap<String, String>,
}

/// Parses the challenges of one `WWW-Authenticate` value (RFC 7235):
/// `Bearer realm="…",service="…",scope="…"`, `Basic realm="x"`, or several
/// separated by commas.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip(|c| c == b' ' || c == b'\t' || c == b',');
        let Some(scheme) = p.token() else { break };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: HashMap::new(),
        };
        loop {
            p.skip(|c| c == b' ' || c == b'\t' || c == b',');
            let save = p.i;
            let Some(name) = p.token() else { break };
            p.skip(|c| c == b' ' || c == b'\t');
            if p.peek() != Some(b'=') {
                // The next challenge's scheme (or a token68): rewind.
                p.i = save;
                if !challenge.params.is_empty() {
                    break;
                }
                // token68 (e.g. `Negotiate abc==`): skip it.
                p.skip(|c| c != b',');
                break;
            }
            p.i += 1;
            p.skip(|c| c == b' ' || c == b'\t');
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default()
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
        }
        out.push(challenge);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c));
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> String {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                c => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// What is sent in `Authorization`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Authorization {
    Basic { username: String, password: String },
    Bearer(String),
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorization::Basic { username, .. } => write!(f, "Basic({username})"),
            Authorization::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Authorization {
    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Authorization::Basic { username, password } => req.basic_auth(username, Some(password)),
            Authorization::Bearer(token) => req.bearer_auth(token),
        }
    }
}

/// The request for a token from a Bearer challenge's realm: the URL and,
/// for a refresh token, the form to POST.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    pub url: Url,
    /// `Some(form)`: POST these (OAuth2); `None`: GET `url`.
    pub form: Option<Vec<(String, String)>>,
    /// Basic credentials for a GET.
    pub basic: Option<(String, String)>,
}

/// The URL, the names of the form's fields and the user name: never the
/// refresh token or the password.
impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Option<Vec<&str>> = self
            .form
            .as_ref()
            .map(|form| form.iter().map(|(k, _)| k.as_str()).collect());
        f.debug_struct("TokenRequest")
            .field("url", &self.url.as_str())
            .field("form_fields", &fields)
            .field("basic_user", &self.basic.as_ref().map(|(user, _)| user))
            .finish()
    }
}

/// Builds the token request for a Bearer challenge. `default_scope` is used
/// when the challenge names none.
pub(crate) fn token_request(
    challenge: &Challenge,
    creds: &Credentials,
    default_scope: &str,
) -> std::result::Result<TokenRequest, String> {
    let realm = challenge
        .params
        .get("realm")
        .ok_or("the Bearer challenge has no realm")?;
    let mut url = Url::parse(realm).map_err(|e| format!("bad realm {realm:?}: {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("bad realm {realm:?}: not http(s)"));
    }
    let service = challenge.params.get("service").cloned().unwrap_or_default();
    let scopes: Vec<String> = match challenge.params.get("scope") {
        Some(s) if !s.is_empty() => s.split(' ').map(str::to_owned).collect(),
        _ => vec![default_scope.to_owned()],
    };
    match creds {
        Credentials::IdentityToken(refresh) => {
            let mut form = vec![
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), refresh.clone()),
                ("service".to_owned(), service),
                ("client_id".to_owned(), CLIENT_ID.to_owned()),
            ];
            form.push(("scope".to_owned(), scopes.join(" ")));
            Ok(TokenRequest {
                url,
                form: Some(form),
                basic: None,
            })
        }
        _ => {
            {
                let mut q = url.query_pairs_mut();
                if !service.is_empty() {
                    q.append_pair("service", &service);
                }
                for scope in &scopes {
                    q.append_pair("scope", scope);
                }
            }
            let basic = match creds {
                Credentials::Basic { username, password } => {
                    Some((username.clone(), password.clone()))
                }
                _ => None,
            };
            Ok(TokenRequest {
                url,
                form: None,
                basic,
            })
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// Asks the token endpoint for a bearer token. `registry` names the
/// registry in errors.
pub(crate) async fn fetch_token(
    client: &reqwest::Client,
    req: TokenRequest,
    registry: &str,
    timeout: Duration,
) -> Result<String> {
    let host = req.url.host_str().unwrap_or("").to_owned();
    let mut builder = match &req.form {
        Some(form) => {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter())
                .finish();
            client
                .post(req.url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
        }
        None => client.get(req.url.clone()),
    };
    if let Some((user, pass)) = &req.basic {
        builder = builder.basic_auth(user, Some(pass));
    }
    let send = tokio::time::timeout(timeout, builder.send());
    let resp = match send.await {
        Err(_) => {
            return Err(Error::DeadlineExceeded(format!(
                "token endpoint {host} of registry {registry} did not answer within {timeout:?}"
            )));
        }
        Ok(Err(e)) => return Err(crate::fetch::transport_error(&host, &e)),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    if !status.is_success() {
        let msg = format!(
            "registry {registry}: token endpoint {host} refused the credentials ({status})"
        );
        return Err(match status.as_u16() {
            401 => Error::Unauthenticated(msg),
            403 => Error::PermissionDenied(msg),
            s if s >= 500 || s == 429 => Error::Unavailable(msg),
            _ => Error::Unauthenticated(msg),
        });
    }
    let body = tokio::time::timeout(timeout, resp.bytes())
        .await
        .map_err(|_| {
            Error::DeadlineExceeded(format!(
                "token endpoint {host} of registry {registry} stalled"
            ))
        })?
        .map_err(|e| crate::fetch::transport_error(&host, &e))?;
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        Error::Unauthenticated(format!(
            "registry {registry}: token endpoint {host} sent an unreadable answer: {e}"
        ))
    })?;
    parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            Error::Unauthenticated(format!(
                "registry {registry}: token endpoint {host} sent no token"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(String, String)> {
        let mut v: Vec<_> = c.params.clone().into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(
            params(&c[0]),
            [
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("scope".into(), "repository:library/busybox:pull".into()),
                ("service".into(), "registry.docker.io".into()),
            ]
        );
    }

    #[test]
    fn several_challenges_and_odd_spacing() {
        let c = parse_challenges(
            r#"Basic realm="x y", Bearer  realm = "https://a/t" , service=svc, scope="a b",Negotiate abc=="#,
        );
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "negotiate"]);
        assert_eq!(c[0].params["realm"], "x y");
        assert_eq!(c[1].params["realm"], "https://a/t");
        assert_eq!(c[1].params["service"], "svc");
        assert_eq!(c[1].params["scope"], "a b");
        let c = parse_challenges(r#"basic realm="with \"quote\"""#);
        assert_eq!(c[0].params["realm"], "with \"quote\"");
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn token_requests() -> std::result::Result<(), String> {
        let c = &parse_challenges(r#"Bearer realm="https://auth.example/token",service="reg""#)[0];
        let r = token_request(c, &Credentials::Anonymous, "repository:a/b:pull")?;
        assert_eq!(
            r.url.as_str(),
            "https://auth.example/token?service=reg&scope=repository%3Aa%2Fb%3Apull"
        );
        assert_eq!((r.form, r.basic), (None, None));
        let basic = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let r = token_request(c, &basic, "repository:a/b:pull")?;
        assert_eq!(r.basic, Some(("u".into(), "p".into())));
        let r = token_request(
            c,
            &Credentials::IdentityToken("rt".into()),
            "repository:a/b:pull",
        )?;
        assert_eq!(r.url.as_str(), "https://auth.example/token");
        let form = r.form.ok_or("no form")?;
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("refresh_token"));
        assert_eq!(get("refresh_token"), Some("rt"));
        assert_eq!(get("service"), Some("reg"));
        assert_eq!(get("scope"), Some("repository:a/b:pull"));
        assert_eq!(get("client_id"), Some("crius"));
        // The challenge's own scope wins.
        let c = &parse_challenges(
            r#"Bearer realm="https://a/t",scope="repository:x:pull repository:y:pull""#,
        )[0];
        let r = token_request(c, &Credentials::Anonymous, "repository:z:pull")?;
        assert_eq!(
            r.url.query(),
            Some("scope=repository%3Ax%3Apull&scope=repository%3Ay%3Apull")
        );
        assert!(
            token_request(
                &parse_challenges("Bearer service=x")[0],
                &Credentials::Anonymous,
                "s"
            )
            .is_err()
        );
        Ok(())
    }

    #[test]
    fn credentials_from_parts() -> Result<()> {
        assert_eq!(
            Credentials::from_parts("", "", "", "", "")?,
            Credentials::Anonymous
        );
        assert_eq!(
            Credentials::from_parts("u", "p", "", "", "")?,
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(
            Credentials::from_parts("", "", "dTpwOng=", "", "")?,
            Credentials::Basic {
                username: "u".into(),
                password: "p:x".into()
            }
        );
        assert_eq!(
            Credentials::from_parts("u", "p", "", "id", "")?,
            Credentials::IdentityToken("id".into())
        );
        assert_eq!(
            Credentials::from_parts("u", "p", "", "id", "rt")?,
            Credentials::RegistryToken("rt".into())
        );
        assert!(Credentials::from_parts("", "", "!!", "", "").is_err());
        let debug = format!(
            "{:?}",
            Credentials::Basic {
                username: "u".into(),
                password: "secret".into()
            }
        );
        assert!(!debug.contains("secret"), "{debug}");
        Ok(())
    }

    #[test]
    fn debug_shows_no_secret() -> std::result::Result<(), String> {
        let c = &parse_challenges(r#"Bearer realm="https://auth.example/token""#)[0];
        let basic = Credentials::Basic {
            username: "alice".into(),
            password: "pw-secret".into(),
        };
        let refresh = Credentials::IdentityToken("refresh-secret".into());
        let shown = [
            format!("{:?}", token_request(c, &basic, "s")?),
            format!("{:?}", token_request(c, &refresh, "s")?),
            format!("{refresh:?}"),
            format!("{:?}", Credentials::RegistryToken("bearer-secret".into())),
            format!(
                "{:?}",
                Authorization::Basic {
                    username: "alice".into(),
                    password: "pw-secret".into()
                }
            ),
            format!("{:?}", Authorization::Bearer("bearer-secret".into())),
        ];
        for text in &shown {
            assert!(!text.contains("secret"), "{text}");
        }
        assert!(shown[0].contains("alice"), "{}", shown[0]);
        assert!(shown[1].contains("refresh_token"), "{}", shown[1]);
        Ok(())
    }
}
