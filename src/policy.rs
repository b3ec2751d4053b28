//! Authorization: what a caller may do where, and which images may run. Both come from one
//! YAML policy file, read once at start-up ([`Policy::load`]) and never changed afterwards.
//!
//! # The policy file
//!
//! ```yaml
//! # Who may do what where. Deny by default: a caller that no rule matches may do nothing.
//! rules:
//!   - name: ci-deploys-to-teams          # required, unique; logs name the rule allowing a call
//!     subjects:                          # exact, case-sensitive match on the caller's subject
//!       - "system:serviceaccount:ci:deployer"
//!       - ci-bot
//!     groups: [platform-team]            # exact, case-sensitive match on any caller group
//!     namespaces: [team-a, "team-*"]     # namespace patterns: '*' matches any run of characters
//!     actions: [deploy, status, list, delete]
//!     references:                        # what the pods they create may reference (none if absent)
//!       secrets: [db-password, "app-*"]  # env value_from, env_from, image_pull_secrets
//!       configMaps: ["*"]                # env value_from, env_from
//!       serviceAccounts: [runner]        # service_account (the namespace's default needs none)
//!   - name: everyone-reads
//!     groups: [developers]
//!     namespaces: ["*"]                  # every namespace
//!     actions: [status, list]
//!   - name: admins
//!     subjects: [alice]
//!     namespaces: ["*"]
//!     actions: ["*"]                     # every action, including ones added later
//!
//! # Which images may run; checked on every Deploy. Without this section every image may run.
//! images:
//!   allow:                               # required, non-empty: patterns for the normalised name
//!     - "docker.io/library/*"            # official Docker Hub images: nginx, redis, ...
//!     - "ghcr.io/acme/**"                # anything under ghcr.io/acme, at any depth
//!     - "registry.k8s.io/pause"          # exactly this one
//!     - "localhost:5000/*"               # a registry with a port
//!   requireDigest: false                 # true: the reference must carry a digest (@sha256:...)
//!   deniedTags: [latest]                 # refused tags; no tag and no digest counts as "latest"
//!
//! # Settings per namespace (optional).
//! namespaces:
//!   team-a:
//!     podSecurity: restricted            # baseline | restricted
//! ```
//!
//! ## `rules`
//!
//! Required; `rules: []` is allowed and lets no one do anything. Rules only allow: there are
//! no deny rules, and a call is allowed when at least one rule allows it. A rule allows a call
//! when all three hold:
//!
//! - the caller matches: its subject is one of `subjects`, or one of its groups is one of
//!   `groups`. Both compare whole strings exactly, case included. A rule needs at least one of
//!   the two lists; either may be left out.
//! - the namespace matches one of `namespaces` (required, non-empty). In a pattern `*` matches
//!   any run of characters, possibly none, and every other character only itself: `team-*`
//!   matches `team-a` and `team-b2` but not `my-team-a`; `"*"` alone matches every namespace.
//!   Patterns may contain only `a-z`, `0-9`, `-` and `*`, and may not start or end with `-`,
//!   since a namespace (a DNS-1123 label) could never match them. Quote patterns that start
//!   with `*`: YAML reads an unquoted `*x` as an alias.
//! - the action is one of `actions` (required, non-empty):
//!
//!   | action   | calls                                                  |
//!   |----------|--------------------------------------------------------|
//!   | `deploy` | Deploy                                                 |
//!   | `status` | GetStatus and WatchStatus                              |
//!   | `list`   | ListPods                                               |
//!   | `delete` | DeletePod                                              |
//!   | `logs`   | reserved for a future logs call; no call checks it yet |
//!   | `"*"`    | every action, including ones added later (quote it)    |
//!
//! `name` is required and unique among the rules. When several rules allow a call, the first
//! in file order is the one named in logs; order changes nothing else.
//!
//! `references` (optional) says which objects of the namespace the pods a call creates may
//! reference: `secrets` (by env `value_from.secret_key`, `env_from[].secret` and
//! `image_pull_secrets`), `configMaps` (by env `value_from.config_map_key` and
//! `env_from[].config_map`) and `serviceAccounts` (by `service_account`). Each is a list of
//! name patterns, `*` matching any run of characters (`"*"` alone: every name); patterns may
//! contain only `a-z`, `0-9`, `-`, `.` and `*`, since names are DNS-1123 subdomains. Deny by
//! default, because anyone who may create a pod may read, through it, every Secret the pod
//! may reference: without `references`, or without the list for a kind, the rule allows no
//! reference of that kind. A reference is allowed when one rule allows the call itself (its
//! subject or group, namespace and action) and lists the name; a refusal is
//! PERMISSION_DENIED naming the field, the object and the key
//! (`env[0].value_from.secret_key: the policy does not let "alice" reference Secret "db" in
//! namespace "team-a" (rules[].references.secrets)`). An empty `service_account` (the
//! namespace's `default`, whose token is not mounted anyway) needs no permission.
//!
//! ## `images`
//!
//! Optional. When present, a Deploy runs only images that pass all three checks, in this
//! order; a refusal names the check (`images.allow`, `images.requireDigest` or
//! `images.deniedTags`):
//!
//! - `allow` (required, non-empty): the image's normalised name must match one of the
//!   patterns. The normalised name is registry, `/`, path, without tag or digest, completed
//!   as container runtimes complete Docker Hub names: no registry means `docker.io`, and a
//!   one-component path there gets `library/`. So `nginx`, `library/nginx`, `docker.io/nginx`
//!   and `docker.io/library/nginx:1.27` are all `docker.io/library/nginx`, `bitnami/redis` is
//!   `docker.io/bitnami/redis`, and `localhost:5000/app:1` is `localhost:5000/app`. Only
//!   `docker.io` and a missing registry count as Docker Hub: `index.docker.io/...` and
//!   `registry-1.docker.io/...` keep their registry and need patterns of their own. The
//!   registry is compared in lower case. In a pattern `*` matches any run of characters within
//!   one `/`-separated segment, `**` (or a longer run of `*`) any run of characters across
//!   segments (`**` alone allows every image), and every other character only itself.
//!   Patterns may contain only `a-z`, `0-9`, `.`, `_`, `-`, `/`, `:`, `[`, `]` and `*`;
//!   patterns that no normalised name could match are refused (no registry part, as in
//!   `nginx`; a tag, as in `docker.io/library/nginx:1.27`; a one-component Docker Hub path,
//!   as in `docker.io/nginx`; an empty segment).
//! - `requireDigest` (default `false`): when `true`, the reference must carry a digest
//!   (`app@sha256:...` or `app:1.2@sha256:...`).
//! - `deniedTags` (default none): tags refused, compared exactly (tags are case-sensitive). A
//!   reference with neither tag nor digest counts as tag `latest`, since that is what the
//!   runtime pulls; a reference with a digest and no tag has no tag to refuse; an explicit
//!   tag is refused even beside a digest.
//!
//! An `images:` key with nothing under it is refused rather than read as "every image".
//!
//! ## `namespaces`
//!
//! Optional settings per namespace; the keys are namespace names (DNS-1123 labels), not
//! patterns, each listed at most once; an entry may be empty. `podSecurity` (optional) is the
//! Pod Security Standards profile pods created there get unless the request asks otherwise:
//! `baseline` or `restricted`. `privileged` is not offered.
//!
//! ## Checks at load
//!
//! Keys are camelCase and unknown keys are refused, so a misspelt key is an error rather than
//! a silently ignored setting. Empty strings are refused wherever a string is expected, and so
//! is a file that is empty or has no `rules` key. A file that is not valid YAML or has a value
//! of the wrong type is refused with the parser's message and location
//! ([`PolicyError::Parse`]). Otherwise every problem is collected and reported together, each
//! at its place ([`PolicyError::Invalid`]), e.g.
//! `rules[2].actions[1]: unknown action "deploi" (expected deploy, status, list, delete, logs, scale, restart, rollback or *)`.

mod file;
mod glob;
mod image;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::domain::caller::Caller;
use crate::domain::image::ImageReference;
use crate::domain::spec::PodSecurityProfile;
use crate::domain::workload::ReferenceKind;

use self::glob::Glob;
use self::image::ImagePolicy;

pub use self::image::{ImageRefusalKind, ImageRefused};

/// Something a caller may be allowed to do in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Deploy: create a pod.
    Deploy,
    /// GetStatus and WatchStatus: read the status of pods.
    Status,
    /// ListPods: list the managed pods.
    List,
    /// DeletePod: delete a managed pod.
    Delete,
    /// Reading a pod's logs; reserved for a future call.
    Logs,
    /// ScaleDeployment: change a Deployment's number of replicas.
    Scale,
    /// RestartDeployment: restart a Deployment's pods.
    Restart,
    /// RollbackDeployment: put a previous revision back.
    Rollback,
}

impl Action {
    /// Every action, in the order the policy file documents them.
    pub const ALL: [Self; 8] = [
        Self::Deploy,
        Self::Status,
        Self::List,
        Self::Delete,
        Self::Logs,
        Self::Scale,
        Self::Restart,
        Self::Rollback,
    ];

    /// The name in the policy file and in logs: `deploy`, `status`, `list`, `delete`, `logs`,
    /// `scale`, `restart`, `rollback`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Status => "status",
            Self::List => "list",
            Self::Delete => "delete",
            Self::Logs => "logs",
            Self::Scale => "scale",
            Self::Restart => "restart",
            Self::Rollback => "rollback",
        }
    }

    /// The action named `name` in the policy file (exactly, lower case).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The actions a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Actions(u16);

impl Actions {
    const NONE: Self = Self(0);
    const ALL: Self = Self(u16::MAX);

    fn insert(&mut self, action: Action) {
        self.0 |= action.bit();
    }

    fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }
}

/// One checked rule.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    subjects: Vec<String>,
    groups: Vec<String>,
    namespaces: Vec<Glob>,
    actions: Actions,
    references: References,
}

/// The objects a rule lets its callers reference in a pod, by name pattern.
#[derive(Debug, Clone, Default)]
struct References {
    secrets: Vec<Glob>,
    config_maps: Vec<Glob>,
    service_accounts: Vec<Glob>,
}

impl References {
    fn allows(&self, kind: ReferenceKind, name: &str) -> bool {
        let patterns = match kind {
            ReferenceKind::Secret => &self.secrets,
            ReferenceKind::ConfigMap => &self.config_maps,
            ReferenceKind::ServiceAccount => &self.service_accounts,
        };
        patterns.iter().any(|pattern| pattern.matches(name))
    }
}

impl Rule {
    fn matches_caller(&self, caller: &Caller) -> bool {
        self.subjects.contains(&caller.subject)
            || caller
                .groups
                .iter()
                .any(|group| self.groups.contains(group))
    }

    fn matches_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .iter()
            .any(|pattern| pattern.matches(namespace))
    }
}

/// The loaded policy: rules, image policy and namespace settings, checked and immutable. See
/// the [module documentation](self) for the file format.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    images: Option<ImagePolicy>,
    pod_security: BTreeMap<String, PodSecurityProfile>,
}

impl Policy {
    /// Parse and check a policy from YAML text. Every problem found is reported, not just the
    /// first.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        parse(text, None)
    }

    /// Read, parse and check the policy file at `path`; every error names the file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse(&text, Some(path))
    }

    /// Whether `caller` may do `action` in `namespace`: `Ok` with the name of the first rule
    /// that allows it, else [`Denied`]. Deny by default: no rule, no access. An empty
    /// namespace is never allowed (callers pass a validated namespace).
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        namespace: &str,
    ) -> Result<&str, Denied> {
        if !namespace.is_empty() {
            let allowing = self.rules.iter().find(|rule| {
                rule.actions.contains(action)
                    && rule.matches_caller(caller)
                    && rule.matches_namespace(namespace)
            });
            if let Some(rule) = allowing {
                return Ok(&rule.name);
            }
        }
        Err(Denied {
            subject: caller.subject.clone(),
            groups: caller.groups.clone(),
            action,
            namespace: namespace.to_owned(),
        })
    }

    /// Whether `caller`, doing `action` in `namespace`, may reference the object `kind`
    /// `name` in a pod: `Ok` with the name of the first rule that allows both the action and
    /// the reference, else [`ReferenceDenied`]. Deny by default: a rule without `references`
    /// allows none.
    pub fn check_reference(
        &self,
        caller: &Caller,
        action: Action,
        namespace: &str,
        kind: ReferenceKind,
        name: &str,
    ) -> Result<&str, ReferenceDenied> {
        let allowing = self.rules.iter().find(|rule| {
            rule.actions.contains(action)
                && rule.matches_caller(caller)
                && rule.matches_namespace(namespace)
                && rule.references.allows(kind, name)
        });
        match allowing {
            Some(rule) if !namespace.is_empty() => Ok(&rule.name),
            _ => Err(ReferenceDenied {
                subject: caller.subject.clone(),
                kind,
                name: name.to_owned(),
                namespace: namespace.to_owned(),
            }),
        }
    }

    /// Check `image` against the `images` section: `Err` names the first rule that refuses it
    /// (`images.allow`, `images.requireDigest`, `images.deniedTags`). Without an `images`
    /// section every image passes.
    pub fn check_image(&self, image: &ImageReference) -> Result<(), ImageRefused> {
        match &self.images {
            Some(images) => images.check(image),
            None => Ok(()),
        }
    }

    /// The pod security profile configured for `namespace`, if any.
    #[must_use]
    pub fn pod_security(&self, namespace: &str) -> Option<PodSecurityProfile> {
        self.pod_security.get(namespace).copied()
    }

    /// Whether some rule could allow some caller some action in `namespace`: a namespace for
    /// which this is false is closed to everyone, and need not be watched.
    #[must_use]
    pub fn may_allow_namespace(&self, namespace: &str) -> bool {
        !namespace.is_empty()
            && self
                .rules
                .iter()
                .any(|rule| rule.matches_namespace(namespace))
    }

    /// The namespace patterns of all rules that are plain names (no `*`), sorted and without
    /// repeats: the namespaces known in advance, e.g. to start their watches early.
    #[must_use]
    pub fn literal_namespaces(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .rules
            .iter()
            .flat_map(|rule| rule.namespaces.iter().filter_map(Glob::literal))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// How many rules the policy has; with none, every call is denied.
    #[must_use]
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether the policy has an `images` section, and so restricts which images may run.
    #[must_use]
    pub fn restricts_images(&self) -> bool {
        self.images.is_some()
    }
}

fn parse(text: &str, path: Option<&Path>) -> Result<Policy, PolicyError> {
    let file: file::PolicyFile = serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Parse {
        path: path.map(Path::to_owned),
        message: e.to_string(),
    })?;
    file.check().map_err(|problems| PolicyError::Invalid {
        path: path.map(Path::to_owned),
        problems,
    })
}

/// Most groups a [`Denied`] message lists; callers with many groups would otherwise make
/// every denial line as long as their token.
const MAX_GROUPS_SHOWN: usize = 8;

/// A call no rule allows. Displayed as one lower-case sentence naming the caller's subject and
/// groups, the action and the namespace, e.g. `subject "alice" (groups: "dev") may not deploy
/// in namespace "prod": no rule allows it`. It holds no credential, so it is safe to log and
/// to send to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Denied {
    /// The caller's subject.
    pub subject: String,
    /// The caller's groups.
    pub groups: Vec<String>,
    /// What it tried to do.
    pub action: Action,
    /// Where.
    pub namespace: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Subject, groups and namespace come from the caller: quoting them with `{:?}` keeps
        // a crafted value from breaking the sentence or the log line it lands in.
        write!(f, "subject {:?} ", self.subject)?;
        if self.groups.is_empty() {
            f.write_str("(no groups)")?;
        } else {
            f.write_str("(groups: ")?;
            for (i, group) in self.groups.iter().take(MAX_GROUPS_SHOWN).enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{group:?}")?;
            }
            if self.groups.len() > MAX_GROUPS_SHOWN {
                write!(f, " and {} more", self.groups.len() - MAX_GROUPS_SHOWN)?;
            }
            f.write_str(")")?;
        }
        write!(
            f,
            " may not {} in namespace {:?}: no rule allows it",
            self.action, self.namespace
        )
    }
}

/// A reference to a Secret, ConfigMap or ServiceAccount that no rule allows. Displayed as
/// one lower-case sentence naming the caller's subject, the object and the namespace, and the
/// key that would allow it, e.g. `the policy does not let "alice" reference Secret "db" in
/// namespace "team-a" (rules[].references.secrets)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ReferenceDenied {
    /// The caller's subject.
    pub subject: String,
    /// What the pod references.
    pub kind: ReferenceKind,
    /// Its name.
    pub name: String,
    /// Where.
    pub namespace: String,
}

impl fmt::Display for ReferenceDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.kind {
            ReferenceKind::Secret => "secrets",
            ReferenceKind::ConfigMap => "configMaps",
            ReferenceKind::ServiceAccount => "serviceAccounts",
        };
        write!(
            f,
            "the policy does not let {:?} reference {} {:?} in namespace {:?} \
             (rules[].references.{key})",
            self.subject, self.kind, self.name, self.namespace
        )
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("reading policy file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },

    /// The text is not YAML, or does not have the file's shape (an unknown key, a list where
    /// a string belongs, ...).
    #[error("{}: {message}", Origin(path.as_deref()))]
    Parse {
        /// The file, when the policy was read from one.
        path: Option<PathBuf>,
        /// The parser's message, with the line and column.
        message: String,
    },

    /// The file has the right shape but breaks rules of its own; every problem is listed.
    #[error("{}: {}", Origin(path.as_deref()), problems.join("; "))]
    Invalid {
        /// The file, when the policy was read from one.
        path: Option<PathBuf>,
        /// Each problem, prefixed with its place: `rules[0].name: required ...`.
        problems: Vec<String>,
    },
}

/// Where a policy came from, as error messages name it.
struct Origin<'a>(Option<&'a Path>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "invalid policy file {}", path.display()),
            None => f.write_str("invalid policy"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::caller::Credential;

    fn caller(subject: &str, groups: &[&str]) -> Caller {
        Caller {
            subject: subject.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            expires_at: None,
            credential: Credential::BearerToken,
        }
    }

    /// The YAML example of the module documentation, taken from this file's source so that the
    /// documented example is the one tested.
    fn documented_example() -> String {
        let source = include_str!("policy.rs");
        source
            .lines()
            .skip_while(|line| *line != "//! ```yaml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| line.strip_prefix("//!").unwrap_or(line))
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_example_loads_and_means_what_it_says() {
        let example = documented_example();
        assert!(example.contains("rules:"), "example not found: {example:?}");
        let policy = Policy::from_yaml(&example)
            .unwrap_or_else(|e| panic!("documented example should load: {e}"));
        let ci = caller("system:serviceaccount:ci:deployer", &[]);
        assert_eq!(
            policy.authorize(&ci, Action::Deploy, "team-b"),
            Ok("ci-deploys-to-teams")
        );
        assert!(policy.authorize(&ci, Action::Deploy, "prod").is_err());
        let dev = caller("bob", &["developers"]);
        assert_eq!(
            policy.authorize(&dev, Action::List, "prod"),
            Ok("everyone-reads")
        );
        assert!(policy.authorize(&dev, Action::Delete, "prod").is_err());
        assert_eq!(
            policy.authorize(&caller("alice", &[]), Action::Logs, "prod"),
            Ok("admins")
        );
        let image = |s: &str| ImageReference::parse(s).expect("valid reference");
        assert_eq!(policy.check_image(&image("nginx:1.27")), Ok(()));
        assert_eq!(policy.check_image(&image("localhost:5000/app:1")), Ok(()));
        assert_eq!(
            policy
                .check_image(&image("nginx"))
                .map_err(|refused| refused.kind),
            Err(ImageRefusalKind::TagDenied)
        );
        assert_eq!(
            policy.pod_security("team-a"),
            Some(PodSecurityProfile::Restricted)
        );
        assert_eq!(policy.pod_security("team-b"), None);
        assert_eq!(policy.literal_namespaces(), ["team-a"]);
        assert_eq!(
            policy.check_reference(
                &ci,
                Action::Deploy,
                "team-b",
                ReferenceKind::Secret,
                "app-tls"
            ),
            Ok("ci-deploys-to-teams")
        );
        assert!(
            policy
                .check_reference(&ci, Action::Deploy, "team-b", ReferenceKind::Secret, "root")
                .is_err()
        );
        assert!(
            policy
                .check_reference(
                    &caller("alice", &[]),
                    Action::Deploy,
                    "team-b",
                    ReferenceKind::ConfigMap,
                    "x"
                )
                .is_err(),
            "actions: [\"*\"] without references allows none"
        );
        assert_eq!(policy.rule_count(), 3);
        assert!(policy.restricts_images());
    }

    #[test]
    fn the_example_manifest_loads() {
        let policy = Policy::from_yaml(include_str!("../manifests/policy.yaml"))
            .unwrap_or_else(|e| panic!("manifests/policy.yaml should load: {e}"));
        let ci = caller("system:serviceaccount:ci:deployer", &[]);
        assert_eq!(
            policy.check_reference(
                &ci,
                Action::Deploy,
                "apps",
                ReferenceKind::Secret,
                "regcred"
            ),
            Ok("ci-deploys-to-apps")
        );
    }

    const POLICY: &str = r#"
rules:
  - name: ci
    subjects: ["system:serviceaccount:ci:deployer"]
    namespaces: [team-a, "team-*"]
    actions: [deploy, status]
  - name: platform
    groups: [platform-team]
    namespaces: [platform]
    actions: ["*"]
  - name: readers
    subjects: [carol]
    groups: [readers]
    namespaces: [shared]
    actions: [list]
  - name: carol-deletes
    subjects: [carol]
    namespaces: [shared]
    actions: [delete]
"#;

    #[test]
    fn authorize_allows_only_what_a_rule_allows() {
        let policy = Policy::from_yaml(POLICY).expect("valid policy");
        let empty = Policy::from_yaml("rules: []").expect("valid policy");
        use Action::*;
        #[rustfmt::skip]
        let cases: Vec<(&Policy, Caller, Action, &str, Option<&str>)> = vec![
            // policy, caller, action, namespace, allowing rule
            // Subject match, with a literal and a glob namespace.
            (&policy, caller("system:serviceaccount:ci:deployer", &[]), Deploy, "team-a", Some("ci")),
            (&policy, caller("system:serviceaccount:ci:deployer", &[]), Status, "team-b", Some("ci")),
            (&policy, caller("system:serviceaccount:ci:deployer", &[]), Deploy, "team-", Some("ci")),
            // Action not listed, namespace not listed.
            (&policy, caller("system:serviceaccount:ci:deployer", &[]), Delete, "team-a", None),
            (&policy, caller("system:serviceaccount:ci:deployer", &[]), Deploy, "prod", None),
            (&policy, caller("system:serviceaccount:ci:deployer", &[]), Deploy, "my-team-a", None),
            // Exact subject match only: no prefix, no case folding.
            (&policy, caller("system:serviceaccount:ci", &[]), Deploy, "team-a", None),
            (&policy, caller("System:ServiceAccount:ci:deployer", &[]), Deploy, "team-a", None),
            // Group match, and "*" actions.
            (&policy, caller("dave", &["dev", "platform-team"]), Deploy, "platform", Some("platform")),
            (&policy, caller("dave", &["platform-team"]), Delete, "platform", Some("platform")),
            (&policy, caller("dave", &["platform-team"]), Logs, "platform", Some("platform")),
            (&policy, caller("dave", &["platform-team"]), Deploy, "team-a", None),
            (&policy, caller("platform-team", &[]), Deploy, "platform", None),
            (&policy, caller("dave", &["Platform-Team"]), Deploy, "platform", None),
            // A group name is not a subject.
            (&policy, caller("erin", &["carol"]), List, "shared", None),
            // Subject or group within one rule.
            (&policy, caller("carol", &[]), List, "shared", Some("readers")),
            (&policy, caller("frank", &["readers"]), List, "shared", Some("readers")),
            // The first rule does not allow it, the second does.
            (&policy, caller("carol", &[]), Delete, "shared", Some("carol-deletes")),
            (&policy, caller("frank", &["readers"]), Delete, "shared", None),
            // An empty namespace is never allowed, not even by a pattern that matches it.
            (&policy, caller("system:serviceaccount:ci:deployer", &[]), Deploy, "", None),
            // No rules at all: nothing is allowed.
            (&empty, caller("alice", &["platform-team"]), Deploy, "team-a", None),
            (&empty, caller("alice", &[]), List, "default", None),
        ];
        for (policy, caller, action, namespace, want) in &cases {
            let got = policy.authorize(caller, *action, namespace);
            match (want, got) {
                (Some(rule), got) => {
                    assert_eq!(got, Ok(*rule), "{caller:?} {action} in {namespace:?}")
                }
                (None, Ok(rule)) => {
                    panic!(
                        "{caller:?} {action} in {namespace:?} should be denied, {rule} allows it"
                    )
                }
                (None, Err(denied)) => {
                    assert_eq!(denied.subject, caller.subject);
                    assert_eq!(denied.action, *action);
                    assert_eq!(denied.namespace, *namespace);
                }
            }
        }
    }

    #[test]
    fn a_star_pattern_allows_every_namespace() {
        let policy = Policy::from_yaml(
            "rules:\n- {name: all, subjects: [alice], namespaces: [\"*\"], actions: [list]}",
        )
        .expect("valid policy");
        for namespace in ["default", "kube-system", "a"] {
            assert_eq!(
                policy.authorize(&caller("alice", &[]), Action::List, namespace),
                Ok("all")
            );
        }
    }

    #[test]
    fn denials_name_caller_action_and_namespace() {
        let policy = Policy::from_yaml(POLICY).expect("valid policy");
        let deny = |caller: Caller, action, namespace| {
            policy
                .authorize(&caller, action, namespace)
                .expect_err("should be denied")
                .to_string()
        };
        assert_eq!(
            deny(caller("alice", &["dev"]), Action::Deploy, "prod"),
            "subject \"alice\" (groups: \"dev\") may not deploy in namespace \"prod\": no rule allows it"
        );
        assert_eq!(
            deny(caller("alice", &[]), Action::Status, "prod"),
            "subject \"alice\" (no groups) may not status in namespace \"prod\": no rule allows it"
        );
        let many: Vec<String> = (0..10).map(|i| format!("g{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            deny(caller("bob", &many), Action::List, "x"),
            "subject \"bob\" (groups: \"g0\", \"g1\", \"g2\", \"g3\", \"g4\", \"g5\", \"g6\", \"g7\" and 2 more) \
             may not list in namespace \"x\": no rule allows it"
        );
        assert_eq!(
            deny(caller("eve\nforged", &[]), Action::Delete, "x"),
            "subject \"eve\\nforged\" (no groups) may not delete in namespace \"x\": no rule allows it"
        );
    }

    /// caller, action, namespace, kind, name, allowing rule.
    type ReferenceCase = (
        Caller,
        Action,
        &'static str,
        ReferenceKind,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn references_are_allowed_only_by_a_rule_that_allows_the_call_and_lists_them() {
        let policy = Policy::from_yaml(
            r#"
rules:
  - name: alice-deploys
    subjects: [alice]
    namespaces: ["team-*"]
    actions: [deploy]
    references:
      secrets: [db-password, "app-*"]
      configMaps: ["*"]
  - name: alice-reads
    subjects: [alice]
    namespaces: ["*"]
    actions: [status]
    references: {serviceAccounts: ["*"]}
  - name: runners
    groups: [ci]
    namespaces: [build]
    actions: [deploy]
    references: {serviceAccounts: [runner]}
  - name: bob-deploys
    subjects: [bob]
    namespaces: ["*"]
    actions: ["*"]
"#,
        )
        .expect("valid policy");
        use Action::{Deploy, Status};
        use ReferenceKind::{ConfigMap, Secret, ServiceAccount};
        #[rustfmt::skip]
        let cases: Vec<ReferenceCase> = vec![
            (caller("alice", &[]), Deploy, "team-a", Secret, "db-password", Some("alice-deploys")),
            (caller("alice", &[]), Deploy, "team-a", Secret, "app-tls", Some("alice-deploys")),
            (caller("alice", &[]), Deploy, "team-a", ConfigMap, "anything.at.all", Some("alice-deploys")),
            // Not listed, another kind, another namespace.
            (caller("alice", &[]), Deploy, "team-a", Secret, "admin-token", None),
            (caller("alice", &[]), Deploy, "team-a", Secret, "db-password-2", None),
            (caller("alice", &[]), Deploy, "team-a", ServiceAccount, "db-password", None),
            (caller("alice", &[]), Deploy, "prod", Secret, "db-password", None),
            // The rule listing it does not allow the action, and the one allowing it does not
            // list it.
            (caller("alice", &[]), Deploy, "team-a", ServiceAccount, "runner", None),
            (caller("alice", &[]), Status, "team-a", ServiceAccount, "runner", Some("alice-reads")),
            // Groups count; exact names.
            (caller("carol", &["ci"]), Deploy, "build", ServiceAccount, "runner", Some("runners")),
            (caller("carol", &["ci"]), Deploy, "build", ServiceAccount, "runner-2", None),
            // Every action, no references: none.
            (caller("bob", &[]), Deploy, "team-a", Secret, "db-password", None),
            (caller("bob", &[]), Deploy, "team-a", ConfigMap, "settings", None),
            // Nobody, and no namespace.
            (caller("mallory", &[]), Deploy, "team-a", ConfigMap, "settings", None),
            (caller("alice", &[]), Deploy, "", ConfigMap, "settings", None),
        ];
        for (caller, action, namespace, kind, name, want) in &cases {
            let got = policy.check_reference(caller, *action, namespace, *kind, name);
            match want {
                Some(rule) => assert_eq!(got, Ok(*rule), "{caller:?} {kind} {name} in {namespace}"),
                None => {
                    let denied = got.expect_err("should be denied");
                    assert_eq!(denied.kind, *kind);
                    assert_eq!(denied.name, *name);
                }
            }
        }
        let denied = policy
            .check_reference(&caller("alice", &["dev"]), Deploy, "team-a", Secret, "root")
            .expect_err("not listed");
        assert_eq!(
            denied.to_string(),
            "the policy does not let \"alice\" reference Secret \"root\" in namespace \"team-a\" \
             (rules[].references.secrets)"
        );
        let denied = policy
            .check_reference(&caller("a\nb", &[]), Deploy, "x", ServiceAccount, "sa")
            .expect_err("no rule");
        assert!(
            denied.to_string().ends_with("reference ServiceAccount \"sa\" in namespace \"x\" (rules[].references.serviceAccounts)")
                && denied.to_string().contains("\"a\\nb\""),
            "{denied}"
        );
    }

    #[test]
    fn actions_have_their_policy_file_names() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(action.to_string(), action.as_str());
        }
        assert_eq!(
            Action::ALL.map(Action::as_str),
            [
                "deploy", "status", "list", "delete", "logs", "scale", "restart", "rollback"
            ]
        );
        assert_eq!(Action::parse("Deploy"), None);
        assert_eq!(Action::parse("*"), None);
    }

    #[test]
    fn namespaces_some_rule_could_allow_are_known() {
        let policy = Policy::from_yaml(POLICY).expect("valid policy");
        assert!(policy.may_allow_namespace("team-x"));
        assert!(policy.may_allow_namespace("shared"));
        assert!(!policy.may_allow_namespace("prod"));
        assert!(!policy.may_allow_namespace(""));
        assert_eq!(
            policy.literal_namespaces(),
            ["platform", "shared", "team-a"]
        );
        assert_eq!(policy.rule_count(), 4);
        assert!(!policy.restricts_images());
        assert_eq!(policy.pod_security("team-a"), None);
    }

    #[test]
    fn malformed_yaml_is_refused_with_its_location() {
        let cases = [
            (
                "rules: []\nimage: {allow: [\"**\"]}",
                "unknown field `image`",
            ),
            (
                "rules:\n- name: r\n  subject: [a]\n  namespaces: [x]\n  actions: [list]",
                "rules[0]: unknown field `subject`",
            ),
            (
                "rules:\n- {name: r, subjects: [a], namespaces: [x], actions: [deploy], references: {secret: [db]}}",
                "rules[0].references: unknown field `secret`, expected one of `secrets`, `configMaps`, `serviceAccounts`",
            ),
            (
                "rules: []\nimages: {allow: [\"**\"], require_digest: true}",
                "unknown field `require_digest`",
            ),
            (
                "rules: []\nimages: {allow: [\"**\"], requireDigest: maybe}",
                "images.requireDigest",
            ),
            (
                "rules: {name: r}",
                "rules: invalid type: map, expected a sequence",
            ),
            ("rules: [\n", "line 2"),
            ("[1]", "expected a map with rules, images and namespaces"),
            (
                "rules: [x]",
                "rules[0]: invalid type: string \"x\", expected a rule",
            ),
            ("rules: []\n---\nrules: []\n", "more than one document"),
        ];
        for (yaml, want) in cases {
            match Policy::from_yaml(yaml) {
                Err(e @ PolicyError::Parse { .. }) => {
                    let text = e.to_string();
                    assert!(text.starts_with("invalid policy: "), "{text}");
                    assert!(
                        text.contains(want),
                        "{yaml:?}: {text:?} should contain {want:?}"
                    );
                }
                other => panic!("{yaml:?} should be a parse error, got {other:?}"),
            }
        }
        let located = Policy::from_yaml("rules: []\nimages:\n  allow: [\"**\"]\n  deny: [x]\n")
            .expect_err("unknown field");
        assert!(located.to_string().contains("line 4 column 3"), "{located}");
    }

    #[test]
    fn an_empty_file_is_refused() {
        for yaml in ["", "# nothing yet\n"] {
            let e = Policy::from_yaml(yaml).expect_err("empty policy");
            assert!(
                e.to_string().contains("rules"),
                "{yaml:?}: {e} should mention rules"
            );
        }
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("k8s-deployer-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");

        let missing = dir.join("missing.yaml");
        let e = Policy::load(&missing).expect_err("missing file");
        assert!(matches!(e, PolicyError::Read { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("reading policy file {}", missing.display())
        );

        let invalid = dir.join("invalid.yaml");
        std::fs::write(
            &invalid,
            "rules:\n- {name: r, subjects: [a], namespaces: [x], actions: [deploi]}\n",
        )
        .expect("write policy");
        let e = Policy::load(&invalid).expect_err("invalid file");
        assert_eq!(
            e.to_string(),
            format!(
                "invalid policy file {}: rules[0].actions[0]: unknown action \"deploi\" \
                 (expected deploy, status, list, delete, logs, scale, restart, rollback or *)",
                invalid.display()
            )
        );

        let unparsable = dir.join("unparsable.yaml");
        std::fs::write(&unparsable, "rules: [").expect("write policy");
        let e = Policy::load(&unparsable).expect_err("unparsable file");
        assert!(matches!(e, PolicyError::Parse { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("invalid policy file {}: ", unparsable.display())),
            "{e}"
        );

        let valid = dir.join("valid.yaml");
        std::fs::write(&valid, POLICY).expect("write policy");
        let policy = Policy::load(&valid).expect("valid file");
        assert_eq!(policy.rule_count(), 4);

        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn several_problems_are_joined_in_one_line() {
        let e = Policy::from_yaml("rules:\n- {subjects: [a], namespaces: [x], actions: [list, x]}")
            .expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "invalid policy: rules[0].name: required (a unique name, used in logs); \
             rules[0].actions[1]: unknown action \"x\" (expected deploy, status, list, delete, logs, scale, restart, rollback or *)"
        );
    }
}
