//! The image policy: which image names may run, whether a digest is required, which tags are
//! refused.

use crate::domain::image::ImageReference;

use super::glob::Glob;

/// The registry that image references without one resolve to.
const DOCKER_HUB: &str = "docker.io";
/// The tag a container runtime pulls when a reference names neither tag nor digest.
const IMPLICIT_TAG: &str = "latest";

/// Which rule of the `images` section refused an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageRefusalKind {
    /// The normalised name matches no pattern of `images.allow`.
    NotAllowed,
    /// `images.requireDigest` is set and the reference has no digest.
    DigestRequired,
    /// The tag (or the implicit `latest`) is listed in `images.deniedTags`.
    TagDenied,
}

impl ImageRefusalKind {
    /// The place in the policy file of the rule: `images.allow`, `images.requireDigest` or
    /// `images.deniedTags`.
    #[must_use]
    pub fn rule(self) -> &'static str {
        match self {
            Self::NotAllowed => "images.allow",
            Self::DigestRequired => "images.requireDigest",
            Self::TagDenied => "images.deniedTags",
        }
    }
}

/// An image the policy refuses. Displayed as one lower-case sentence naming the image and the
/// rule, e.g. `image "nginx:latest": tag "latest" is denied by images.deniedTags`; safe to
/// send to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImageRefused {
    /// The rule that refused it, as [`ImageRefusalKind::rule`] names it.
    pub rule: &'static str,
    /// Why it was refused.
    pub kind: ImageRefusalKind,
    message: String,
}

impl ImageRefused {
    fn new(kind: ImageRefusalKind, image: &ImageReference, why: &str) -> Self {
        Self {
            rule: kind.rule(),
            kind,
            message: format!("image {:?}: {why}", image.as_str()),
        }
    }
}

/// The checked `images` section.
#[derive(Debug, Clone)]
pub(crate) struct ImagePolicy {
    pub(crate) allow: Vec<Glob>,
    pub(crate) require_digest: bool,
    pub(crate) denied_tags: Vec<String>,
}

impl ImagePolicy {
    /// The first rule, in the order allow, requireDigest, deniedTags, that refuses `image`.
    pub(crate) fn check(&self, image: &ImageReference) -> Result<(), ImageRefused> {
        let name = normalised_name(image);
        if !self.allow.iter().any(|pattern| pattern.matches(&name)) {
            return Err(ImageRefused::new(
                ImageRefusalKind::NotAllowed,
                image,
                &format!("{name:?} matches no pattern of images.allow"),
            ));
        }
        if self.require_digest && image.digest.is_none() {
            return Err(ImageRefused::new(
                ImageRefusalKind::DigestRequired,
                image,
                "a digest (@sha256:...) is required by images.requireDigest",
            ));
        }
        // A digest pins the content, so a reference with a digest and no tag has no tag to
        // refuse; an explicit tag is judged even beside a digest, because the pod shows it.
        let (tag, implicit) = match (&image.tag, &image.digest) {
            (Some(tag), _) => (tag.as_str(), false),
            (None, Some(_)) => return Ok(()),
            (None, None) => (IMPLICIT_TAG, true),
        };
        if self.denied_tags.iter().any(|denied| denied == tag) {
            let why = if implicit {
                format!("no tag or digest means tag {tag:?}, which is denied by images.deniedTags")
            } else {
                format!("tag {tag:?} is denied by images.deniedTags")
            };
            return Err(ImageRefused::new(ImageRefusalKind::TagDenied, image, &why));
        }
        Ok(())
    }
}

/// The name image patterns are matched against: registry, '/', path, without tag or digest.
///
/// Docker Hub is completed as container runtimes do: no registry means `docker.io`, and a
/// one-component path there gets `library/` (`nginx` → `docker.io/library/nginx`). Only
/// `docker.io` and a missing registry count as Docker Hub: `index.docker.io` and
/// `registry-1.docker.io` are left as they are, so patterns for them must name them. The
/// registry is lower-cased, as host names are case-insensitive and patterns are lower case;
/// paths are lower case already.
pub(crate) fn normalised_name(image: &ImageReference) -> String {
    let registry = image
        .registry
        .as_deref()
        .map_or_else(|| DOCKER_HUB.to_owned(), str::to_ascii_lowercase);
    if registry == DOCKER_HUB && !image.path.contains('/') {
        format!("{registry}/library/{}", image.path)
    } else {
        format!("{registry}/{}", image.path)
    }
}

/// Why `pattern` cannot be an `images.allow` pattern, if it cannot: it has characters no image
/// name has, or a shape no normalised name has.
pub(crate) fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if pattern.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(format!(
            "{pattern:?} can never match: image names are lower case"
        ));
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '.' | '_' | '-' | '/' | ':' | '[' | ']' | '*')
    };
    if let Some(c) = pattern.chars().find(|&c| !allowed(c)) {
        return Some(format!(
            "{pattern:?} contains {c:?}, which cannot appear in an image name \
             (a-z, 0-9, '.', '_', '-', '/', ':', '[', ']' and '*' only)"
        ));
    }
    if pattern.split('/').any(str::is_empty) {
        return Some(format!(
            "{pattern:?} can never match: empty segment (leading, trailing or doubled '/')"
        ));
    }
    let Some((first, rest)) = pattern.split_once('/') else {
        if pattern.contains("**") {
            return None;
        }
        return Some(format!(
            "{pattern:?} can never match: patterns match the full name, registry included \
             (e.g. \"docker.io/library/nginx\")"
        ));
    };
    // Every segment after the first lines up with a path component of the name (a leading
    // `**` can only swallow more of the path), and path components have no ':' or brackets.
    if let Some(c) = rest.chars().find(|c| matches!(c, ':' | '[' | ']')) {
        return Some(format!(
            "{pattern:?} can never match: {c:?} can only appear in the registry, before the \
             first '/' (patterns match names without tag or digest)"
        ));
    }
    if first == DOCKER_HUB && !rest.contains('/') && !rest.contains("**") {
        return Some(format!(
            "{pattern:?} can never match: Docker Hub names with one path component are \
             normalised to \"docker.io/library/...\""
        ));
    }
    None
}

/// Why `tag` is not a valid image tag, if it is not (the domain's tag grammar).
pub(crate) fn tag_problem(tag: &str) -> Option<String> {
    crate::domain::image::validate_tag(tag).err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn policy(images: &str) -> Policy {
        Policy::from_yaml(&format!("rules: []\nimages:\n{images}"))
            .unwrap_or_else(|e| panic!("test policy should load: {e}"))
    }

    fn image(reference: &str) -> ImageReference {
        ImageReference::parse(reference)
            .unwrap_or_else(|e| panic!("{reference:?} should parse: {e}"))
    }

    #[test]
    fn names_are_normalised_as_container_runtimes_do() {
        let cases = [
            ("nginx", "docker.io/library/nginx"),
            ("nginx:1.27", "docker.io/library/nginx"),
            ("library/nginx", "docker.io/library/nginx"),
            ("docker.io/nginx", "docker.io/library/nginx"),
            ("docker.io/library/nginx:1.27", "docker.io/library/nginx"),
            ("bitnami/redis", "docker.io/bitnami/redis"),
            ("Docker.IO/nginx", "docker.io/library/nginx"),
            ("index.docker.io/nginx", "index.docker.io/nginx"),
            ("ghcr.io/acme/app", "ghcr.io/acme/app"),
            ("Registry.Example.COM/app", "registry.example.com/app"),
            ("localhost:5000/x", "localhost:5000/x"),
            ("[::1]:5000/x:y", "[::1]:5000/x"),
        ];
        for (reference, want) in cases {
            assert_eq!(normalised_name(&image(reference)), want, "{reference:?}");
        }
        let pinned = image(&format!("nginx@sha256:{HEX64}"));
        assert_eq!(normalised_name(&pinned), "docker.io/library/nginx");
    }

    #[test]
    fn images_are_checked_against_every_rule() {
        let open = policy(
            "  allow: [\"docker.io/library/*\", \"ghcr.io/acme/**\", \"localhost:5000/*\", \
             \"registry.k8s.io/pause\"]\n  deniedTags: [latest, edge]\n",
        );
        let pinned = policy("  allow: [\"**\"]\n  requireDigest: true\n");
        let digest = format!("sha256:{HEX64}");
        use ImageRefusalKind::*;
        #[rustfmt::skip]
        let cases: Vec<(&Policy, String, Option<ImageRefusalKind>, &str)> = vec![
            // policy, reference, refusal, message
            (&open, "nginx:1.27".into(), None, ""),
            (&open, "library/nginx:1.27".into(), None, ""),
            (&open, "docker.io/library/nginx:1.27".into(), None, ""),
            (&open, "docker.io/nginx:1.27".into(), None, ""),
            (&open, "ghcr.io/acme/app:v1".into(), None, ""),
            (&open, "ghcr.io/acme/team/tools/app:v1".into(), None, ""),
            (&open, "localhost:5000/x:1".into(), None, ""),
            (&open, "registry.k8s.io/pause:3.10".into(), None, ""),
            (&open, format!("nginx@{digest}"), None, ""),
            (&open, "bitnami/redis:7".into(), Some(NotAllowed),
             "image \"bitnami/redis:7\": \"docker.io/bitnami/redis\" matches no pattern of images.allow"),
            (&open, "ghcr.io/other/app:v1".into(), Some(NotAllowed),
             "image \"ghcr.io/other/app:v1\": \"ghcr.io/other/app\" matches no pattern of images.allow"),
            (&open, "localhost:5000/a/b:1".into(), Some(NotAllowed),
             "image \"localhost:5000/a/b:1\": \"localhost:5000/a/b\" matches no pattern of images.allow"),
            (&open, "registry.k8s.io/pause-extra:1".into(), Some(NotAllowed),
             "image \"registry.k8s.io/pause-extra:1\": \"registry.k8s.io/pause-extra\" matches no pattern of images.allow"),
            (&open, "nginx:latest".into(), Some(TagDenied),
             "image \"nginx:latest\": tag \"latest\" is denied by images.deniedTags"),
            (&open, "nginx:edge".into(), Some(TagDenied),
             "image \"nginx:edge\": tag \"edge\" is denied by images.deniedTags"),
            (&open, "nginx".into(), Some(TagDenied),
             "image \"nginx\": no tag or digest means tag \"latest\", which is denied by images.deniedTags"),
            (&open, format!("nginx:latest@{digest}"), Some(TagDenied),
             "tag \"latest\" is denied by images.deniedTags"),
            // Tags are case-sensitive, as registries treat them.
            (&open, "nginx:Latest".into(), None, ""),
            (&pinned, format!("nginx@{digest}"), None, ""),
            (&pinned, format!("ghcr.io/acme/app:v1@{digest}"), None, ""),
            (&pinned, "nginx:1.27".into(), Some(DigestRequired),
             "image \"nginx:1.27\": a digest (@sha256:...) is required by images.requireDigest"),
            (&pinned, "nginx".into(), Some(DigestRequired),
             "image \"nginx\": a digest (@sha256:...) is required by images.requireDigest"),
        ];
        for (policy, reference, want, message) in &cases {
            let result = policy.check_image(&image(reference));
            match (want, result) {
                (None, Ok(())) => {}
                (None, Err(refused)) => panic!("{reference:?} should run, refused: {refused}"),
                (Some(kind), Ok(())) => panic!("{reference:?} should be refused by {kind:?}"),
                (Some(kind), Err(refused)) => {
                    assert_eq!(refused.kind, *kind, "{reference:?}");
                    assert_eq!(refused.rule, kind.rule(), "{reference:?}");
                    let text = refused.to_string();
                    assert!(text.ends_with(message), "{reference:?}: {text:?}");
                }
            }
        }
    }

    #[test]
    fn without_an_images_section_every_image_may_run() {
        let policy = Policy::from_yaml("rules: []").expect("valid policy");
        for reference in ["nginx", "nginx:latest", "evil.example/miner:latest"] {
            assert_eq!(
                policy.check_image(&image(reference)),
                Ok(()),
                "{reference:?}"
            );
        }
    }

    #[test]
    fn rules_are_named_by_their_place_in_the_file() {
        assert_eq!(ImageRefusalKind::NotAllowed.rule(), "images.allow");
        assert_eq!(
            ImageRefusalKind::DigestRequired.rule(),
            "images.requireDigest"
        );
        assert_eq!(ImageRefusalKind::TagDenied.rule(), "images.deniedTags");
    }
}
