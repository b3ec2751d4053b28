//! Container image references, checked against the OCI distribution (Docker) reference
//! grammar before anything reaches the cluster:
//!
//! ```text
//! reference      := name [":" tag] ["@" digest]
//! name           := [domain "/"] path-component ("/" path-component)*
//! domain         := host [":" port]            host: DNS name, IPv4 or "[" IPv6 "]"
//! path-component := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator      := "." | "_" | "__" | "-"+
//! tag            := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest         := algorithm ":" encoded
//! algorithm      := [a-z0-9]+ ([+._-] [a-z0-9]+)*
//! encoded        := [a-zA-Z0-9=_-]+
//! ```
//!
//! Of the digests the grammar allows, only the registered algorithms are accepted, with their
//! exact encodings: `sha256` with 64 lower-case hex characters, `sha512` with 128 (no runtime
//! pulls by `md5:...` or a truncated hash, so such a pod could never start).
//!
//! The first component of the name is a registry only when it contains '.' or ':', is
//! "localhost", or is a bracketed IPv6 address, and is a valid host; otherwise it is part of
//! the path (as the grammar's regular expression decides: "a-b__c.d/e" has no registry).
//! The name (registry and path) is at most 255 characters. No normalisation is done:
//! "nginx" stays "nginx", the container runtime completes it.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Longest name (registry and path, without tag and digest).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// A parsed image reference, e.g. `ghcr.io/org/app:1.2@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry host, with its port if any (`localhost:5000`, `[::1]:5000`).
    pub registry: Option<String>,
    /// Repository path (`library/nginx`).
    pub path: String,
    /// Tag, without the ':'.
    pub tag: Option<String>,
    /// Digest, `algorithm:encoded`, without the '@'.
    pub digest: Option<String>,
    /// The reference exactly as given.
    original: String,
}

impl ImageReference {
    /// Parse and check a reference. The error names the rule that failed, e.g.
    /// `path component "Nginx" must be lower case`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace()) {
            return Err(format!("must not contain whitespace (found {c:?})"));
        }
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(format!("must not contain control characters (found {c:?})"));
        }
        if let Some(i) = s.find("://") {
            return Err(format!(
                "must not start with a URL scheme ({:?}): write registry/path",
                &s[..i + 3]
            ));
        }

        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest)?;
                (rest, Some(digest.to_owned()))
            }
            None => (s, None),
        };

        // The tag follows the last ':' that comes after the last '/' (an earlier ':' is a port).
        let last_slash = rest.rfind('/');
        let tag_colon = rest
            .rfind(':')
            .filter(|&colon| last_slash.is_none_or(|slash| colon > slash));
        let (name, tag) = match tag_colon {
            Some(colon) => (&rest[..colon], Some(&rest[colon + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }

        if name.is_empty() {
            return Err("repository name is missing before ':' or '@'".to_owned());
        }
        if name.len() > MAX_NAME_LEN {
            return Err(format!(
                "name must be at most {MAX_NAME_LEN} characters, not {}",
                name.len()
            ));
        }
        let (registry, path) = split_registry(name)?;
        for component in path.split('/') {
            check_path_component(component)?;
        }

        Ok(Self {
            registry: registry.map(str::to_owned),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
            original: s.to_owned(),
        })
    }

    /// The last component of the path: `nginx` for `docker.io/library/nginx:1.27`.
    #[must_use]
    pub fn last_path_component(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The reference exactly as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.original
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl FromStr for ImageReference {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Split `name` into registry and path. The first component is a registry when it looks like
/// one and is a valid host; when it looks like one but is not, it is still taken as a path
/// component if it is a valid one, else the registry's error is returned.
fn split_registry(name: &str) -> Result<(Option<&str>, &str), String> {
    let Some((first, rest)) = name.split_once('/') else {
        return Ok((None, name));
    };
    let looks_like_registry =
        first.contains(['.', ':']) || first == "localhost" || first.starts_with('[');
    if !looks_like_registry {
        return Ok((None, name));
    }
    match check_registry(first) {
        Ok(()) => Ok((Some(first), rest)),
        Err(e) if check_path_component(first).is_err() => Err(e),
        Err(_) => Ok((None, name)),
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let port = if let Some(bracketed) = registry.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(format!("registry {registry:?} has no closing ']'"));
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "registry {registry:?}: {address:?} is not an IPv6 address"
            ));
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => {
                    return Err(format!(
                        "registry {registry:?}: only \":port\" may follow ']'"
                    ));
                }
            },
        }
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        check_host(registry, host)?;
        port
    };
    if let Some(port) = port {
        check_port(registry, port)?;
    }
    Ok(())
}

fn check_host(registry: &str, host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(format!("registry {registry:?} has an empty host"));
    }
    for component in host.split('.') {
        if component.is_empty() {
            return Err(format!(
                "registry host {host:?} has an empty component (leading, trailing or doubled '.')"
            ));
        }
        if let Some(c) = component
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "registry host {host:?} contains invalid character {c:?} (letters, digits, '-' and '.' only)"
            ));
        }
        if component.starts_with('-') || component.ends_with('-') {
            return Err(format!(
                "registry host {host:?}: each component must start and end with a letter or digit"
            ));
        }
    }
    Ok(())
}

fn check_port(registry: &str, port: &str) -> Result<(), String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "registry {registry:?}: port {port:?} must be numeric"
        ));
    }
    match port.parse::<u32>() {
        Ok(1..=65535) => Ok(()),
        _ => Err(format!(
            "registry {registry:?}: port {port} must be 1 to 65535"
        )),
    }
}

fn check_path_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("path has an empty component (leading, trailing or doubled '/')".to_owned());
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("path component {component:?} must be lower case"));
    }
    if let Some(c) = component.chars().find(|&c| !is_path_char(c)) {
        return Err(if c == ':' {
            format!("path component {component:?} contains ':' (only one tag, after the last '/')")
        } else {
            format!(
                "path component {component:?} contains invalid character {c:?} (a-z, 0-9, '.', '_', '-' only)"
            )
        });
    }
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) {
        return Err(format!(
            "path component {component:?} must start with a letter or digit"
        ));
    }
    if !bytes.last().is_some_and(alnum) {
        return Err(format!(
            "path component {component:?} must end with a letter or digit"
        ));
    }
    for separator in component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        let valid =
            matches!(separator, "" | "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(format!(
                "path component {component:?} has invalid separator {separator:?} (one of '.', '_', '__' or a run of '-')"
            ));
        }
    }
    Ok(())
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("tag after ':' is empty".to_owned());
    }
    validate_tag(tag)
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. The error quotes the tag and names the rule,
/// e.g. `"-rc" is not a valid tag: must start with a letter, digit or '_'`. The one home of
/// the tag grammar: the image policy checks its `deniedTags` with it too.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let why = if tag.len() > MAX_TAG_LEN {
        format!("must be at most {MAX_TAG_LEN} characters")
    } else if let Some(c) = tag.chars().find(|&c| !(word(c) || c == '.' || c == '-')) {
        format!("only letters, digits, '_', '.' and '-' (found {c:?})")
    } else if !tag.starts_with(word) {
        "must start with a letter, digit or '_'".to_owned()
    } else {
        return Ok(());
    };
    Err(format!("{tag:?} is not a valid tag: {why}"))
}

fn check_digest(digest: &str) -> Result<(), String> {
    if digest.is_empty() {
        return Err("digest after '@' is empty".to_owned());
    }
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(format!(
            "digest {digest:?} must be algorithm:encoded, e.g. sha256:<64 hex>"
        ));
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !algorithm_ok {
        return Err(format!(
            "digest algorithm {algorithm:?} is invalid (lower-case letters and digits, joined by '+', '.', '_' or '-')"
        ));
    }
    // Only the registered algorithms (OCI image spec, "Registered algorithms"), with their
    // exact encodings: a runtime cannot pull by any other digest, so the pod could never start.
    let Some(len) = registered_digest_len(algorithm) else {
        return Err(format!(
            "digest algorithm {algorithm:?} is not supported ({})",
            DIGEST_ALGORITHMS
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    };
    let rule = format!("{algorithm} digest must be {len} lower-case hex characters");
    if let Some(c) = encoded
        .chars()
        .find(|&c| !(c.is_ascii_digit() || ('a'..='f').contains(&c)))
    {
        return Err(format!("{rule} (found {c:?})"));
    }
    if encoded.len() != len {
        return Err(format!("{rule}, not {}", encoded.len()));
    }
    Ok(())
}

/// The digest algorithms a reference may use, with the length of their hex encoding.
pub const DIGEST_ALGORITHMS: [(&str, usize); 2] = [("sha256", 64), ("sha512", 128)];

fn registered_digest_len(algorithm: &str) -> Option<usize> {
    DIGEST_ALGORITHMS
        .iter()
        .find(|(name, _)| *name == algorithm)
        .map(|(_, len)| *len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn opt(s: &str) -> Option<String> {
        (!s.is_empty()).then(|| s.to_owned())
    }

    #[test]
    fn valid_references_parse_into_their_parts() {
        let digest = format!("sha256:{HEX64}");
        let sha512 = format!("sha512:{HEX64}{HEX64}");
        let long_tag = "t".repeat(128);
        let long_name = format!("{}/{}", "a".repeat(100), "b".repeat(154));
        #[rustfmt::skip]
        let cases: Vec<(String, &str, &str, &str, &str)> = vec![
            // input, registry, path, tag, digest
            ("nginx".into(), "", "nginx", "", ""),
            ("nginx:1.27".into(), "", "nginx", "1.27", ""),
            ("library/nginx".into(), "", "library/nginx", "", ""),
            ("docker.io/library/nginx:latest".into(), "docker.io", "library/nginx", "latest", ""),
            ("localhost/x".into(), "localhost", "x", "", ""),
            ("localhost:5000/a/b".into(), "localhost:5000", "a/b", "", ""),
            ("gcr.io/google-containers/pause".into(), "gcr.io", "google-containers/pause", "", ""),
            ("registry:5000/x".into(), "registry:5000", "x", "", ""),
            ("[::1]:5000/x:y".into(), "[::1]:5000", "x", "y", ""),
            ("[fe80::1]/x".into(), "[fe80::1]", "x", "", ""),
            ("10.0.0.1:5000/team/app:v2".into(), "10.0.0.1:5000", "team/app", "v2", ""),
            ("a-b__c.d/e".into(), "", "a-b__c.d/e", "", ""),
            ("a---b/c_d".into(), "", "a---b/c_d", "", ""),
            (format!("x@{digest}"), "", "x", "", &digest),
            (format!("x:tag@{digest}"), "", "x", "tag", &digest),
            (format!("ghcr.io/org/app@{sha512}"), "ghcr.io", "org/app", "", &sha512),
            ("fail.invalid/nothing:1".into(), "fail.invalid", "nothing", "1", ""),
            ("Registry.Example.COM/app".into(), "Registry.Example.COM", "app", "", ""),
            ("my-registry.io:443/a/b/c/d:_tag".into(), "my-registry.io:443", "a/b/c/d", "_tag", ""),
            ("localhost:5000".into(), "", "localhost", "5000", ""),
            ("ubuntu:22.04".into(), "", "ubuntu", "22.04", ""),
            ("app:V1.0-RC_1".into(), "", "app", "V1.0-RC_1", ""),
            (format!("app:{long_tag}"), "", "app", &long_tag, ""),
            ("0/1".into(), "", "0/1", "", ""),
            // Looks like a registry ('.') but '_' is not allowed in a host: all path.
            ("a.b_c/d".into(), "", "a.b_c/d", "", ""),
            (long_name.clone(), "", &long_name, "", ""),
            ("quay.io/prometheus/node-exporter:v1.8.1".into(), "quay.io", "prometheus/node-exporter", "v1.8.1", ""),
        ];
        for (input, registry, path, tag, digest) in &cases {
            let parsed = ImageReference::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse, got: {e}"));
            assert_eq!(parsed.registry, opt(registry), "registry of {input:?}");
            assert_eq!(parsed.path, *path, "path of {input:?}");
            assert_eq!(parsed.tag, opt(tag), "tag of {input:?}");
            assert_eq!(parsed.digest, opt(digest), "digest of {input:?}");
            assert_eq!(parsed.to_string(), *input, "display of {input:?}");
        }
        assert!(cases.len() >= 25);
    }

    #[test]
    fn malformed_references_name_the_rule() {
        let upper = HEX64.to_uppercase();
        #[rustfmt::skip]
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "must not be empty"),
            ("Nginx".into(), "must be lower case"),
            ("a/B/c".into(), "path component \"B\" must be lower case"),
            ("nginx:".into(), "tag after ':' is empty"),
            (":tag".into(), "repository name is missing"),
            (format!("@sha256:{HEX64}"), "repository name is missing"),
            ("nginx@".into(), "digest after '@' is empty"),
            ("nginx@sha256:abc".into(), "sha256 digest must be 64 lower-case hex characters"),
            (format!("nginx@sha256:{upper}"), "sha256 digest must be 64 lower-case hex characters"),
            (format!("nginx@sha256:{}", &HEX64[..63]), "sha256 digest must be 64 lower-case hex"),
            (format!("nginx@sha512:{HEX64}"), "sha512 digest must be 128 lower-case hex"),
            ("nginx@md5".into(), "must be algorithm:encoded"),
            ("nginx@SHA256:abc".into(), "digest algorithm \"SHA256\" is invalid"),
            ("nginx@foo:".into(), "digest algorithm \"foo\" is not supported (sha256 or sha512)"),
            ("nginx@foo:a/b".into(), "digest algorithm \"foo\" is not supported"),
            ("ngin x".into(), "must not contain whitespace"),
            ("nginx:tag with space".into(), "must not contain whitespace"),
            ("\tnginx".into(), "must not contain whitespace"),
            ("nginx\u{0}".into(), "must not contain control characters"),
            ("-nginx".into(), "must start with a letter or digit"),
            ("nginx-".into(), "must end with a letter or digit"),
            ("nginx//x".into(), "empty component"),
            ("nginx/".into(), "empty component"),
            ("/nginx".into(), "empty component"),
            ("nginx:-tag".into(), "\"-tag\" is not a valid tag: must start with a letter, digit or '_'"),
            ("nginx:.tag".into(), "must start with a letter, digit or '_'"),
            (format!("nginx:{}", "t".repeat(129)), "is not a valid tag: must be at most 128 characters"),
            ("nginx:ta+g".into(), "\"ta+g\" is not a valid tag: only letters, digits, '_', '.' and '-' (found '+')"),
            ("a..b".into(), "invalid separator \"..\""),
            ("a___b".into(), "invalid separator \"___\""),
            ("a.-b".into(), "invalid separator \".-\""),
            ("nginx:1.0:2".into(), "contains ':' (only one tag"),
            ("http://nginx".into(), "must not start with a URL scheme"),
            ("a".repeat(256), "name must be at most 255 characters"),
            (format!("registry.io/{}", "a".repeat(244)), "name must be at most 255 characters"),
            ("registry:port/x".into(), "port \"port\" must be numeric"),
            ("registry:/x".into(), "port \"\" must be numeric"),
            ("registry:99999/x".into(), "port 99999 must be 1 to 65535"),
            ("registry.io:0/x".into(), "port 0 must be 1 to 65535"),
            ("-registry.io/x".into(), "each component must start and end with a letter or digit"),
            ("registry..io/x".into(), "empty component"),
            ("[::1/x".into(), "no closing ']'"),
            ("[zz::1]:5000/x".into(), "is not an IPv6 address"),
            ("[::1]5000/x".into(), "only \":port\" may follow ']'"),
            ("café".into(), "invalid character 'é'"),
            ("nginx#1".into(), "invalid character '#'"),
        ];
        for (input, rule) in &cases {
            match ImageReference::parse(input) {
                Ok(parsed) => panic!("{input:?} should be refused, parsed as {parsed:?}"),
                Err(e) => {
                    assert!(
                        e.contains(rule),
                        "{input:?}: error {e:?} should contain {rule:?}"
                    );
                    assert!(
                        !e.ends_with('.'),
                        "{input:?}: error {e:?} ends with a period"
                    );
                }
            }
        }
        assert!(cases.len() >= 25);
    }

    #[test]
    fn only_registered_digest_algorithms_with_exact_encodings_are_accepted() {
        let hex128 = format!("{HEX64}{HEX64}");
        #[rustfmt::skip]
        let cases: Vec<(String, Result<(), &str>)> = vec![
            (format!("sha256:{HEX64}"), Ok(())),
            (format!("sha512:{hex128}"), Ok(())),
            ("md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
             Err("digest algorithm \"md5\" is not supported (sha256 or sha512)")),
            (format!("sha1:{}", &HEX64[..40]), Err("digest algorithm \"sha1\" is not supported")),
            (format!("sha384:{}", &hex128[..96]), Err("digest algorithm \"sha384\" is not supported")),
            ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".into(),
             Err("digest algorithm \"multihash+base58\" is not supported")),
            (format!("blake3:{HEX64}"), Err("digest algorithm \"blake3\" is not supported")),
            (format!("sha256:{}", &HEX64[..63]), Err("sha256 digest must be 64 lower-case hex characters, not 63")),
            (format!("sha256:{HEX64}0"), Err("sha256 digest must be 64 lower-case hex characters, not 65")),
            (format!("sha256:{}", HEX64.to_uppercase()), Err("sha256 digest must be 64 lower-case hex characters (found 'A')")),
            (format!("sha256:{}g", &HEX64[..63]), Err("sha256 digest must be 64 lower-case hex characters (found 'g')")),
            (format!("sha512:{HEX64}"), Err("sha512 digest must be 128 lower-case hex characters, not 64")),
            (format!("sha512:{hex128}a"), Err("sha512 digest must be 128 lower-case hex characters, not 129")),
            ("sha256:".into(), Err("sha256 digest must be 64 lower-case hex characters, not 0")),
            (format!("SHA256:{HEX64}"), Err("digest algorithm \"SHA256\" is invalid")),
        ];
        for (digest, want) in cases {
            let reference = format!("nginx@{digest}");
            match (ImageReference::parse(&reference), want) {
                (Ok(parsed), Ok(())) => assert_eq!(parsed.digest.as_deref(), Some(digest.as_str())),
                (Ok(_), Err(rule)) => panic!("{reference:?} should be refused: {rule}"),
                (Err(e), Ok(())) => panic!("{reference:?} should parse, got: {e}"),
                (Err(e), Err(rule)) => assert!(e.starts_with(rule), "{reference:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn last_path_component_is_the_repository_basename() {
        let cases = [
            ("nginx".to_owned(), "nginx"),
            ("docker.io/library/nginx:1.27".to_owned(), "nginx"),
            (format!("localhost:5000/a/b@sha256:{HEX64}"), "b"),
        ];
        for (input, want) in cases {
            let parsed = ImageReference::parse(&input).expect("valid reference");
            assert_eq!(parsed.last_path_component(), want, "{input:?}");
        }
    }
}
