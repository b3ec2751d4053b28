//! The policy file as written, and its check: every problem is collected, each naming its
//! place (`rules[2].actions[1]`), before a [`Policy`] is built.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::domain::names::{DNS1123_LABEL_MAX_LEN, DNS1123_SUBDOMAIN_MAX_LEN, is_dns1123_label};
use crate::domain::spec::PodSecurityProfile;

use super::glob::Glob;
use super::image::{ImagePolicy, pattern_problem, tag_problem};
use super::{Action, Actions, Policy, References, Rule};

/// The whole file. Fields whose absence is a problem are optional here, so that the check can
/// report them together with every other problem instead of stopping at the first.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map with rules, images and namespaces"
)]
pub(super) struct PolicyFile {
    rules: Option<Vec<RuleEntry>>,
    /// Outer `None`: no `images` key; `Some(None)`: `images:` with nothing under it, which is
    /// refused rather than read as "no image policy".
    #[serde(default, deserialize_with = "present")]
    images: Option<Option<ImagesEntry>>,
    #[serde(default)]
    namespaces: Option<NamespaceEntries>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a rule: a map with name, subjects, groups, namespaces, actions and references"
)]
struct RuleEntry {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    references: Option<ReferencesEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map with secrets, configMaps and serviceAccounts"
)]
struct ReferencesEntry {
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    config_maps: Vec<String>,
    #[serde(default)]
    service_accounts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map with allow, requireDigest and deniedTags"
)]
struct ImagesEntry {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    require_digest: bool,
    #[serde(default)]
    denied_tags: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a map of namespace settings (podSecurity)"
)]
struct NamespaceEntry {
    pod_security: Option<String>,
}

/// The `namespaces` section in file order, repeated keys included: a map type would keep
/// only the last of two entries for one namespace, silently.
#[derive(Debug, Default)]
struct NamespaceEntries(Vec<(String, Option<NamespaceEntry>)>);

impl<'de> Deserialize<'de> for NamespaceEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = NamespaceEntries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from namespace names to their settings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(NamespaceEntries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// Deserialize a present key as `Some`, even when its value is null.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl PolicyFile {
    /// Check everything and build the policy, or list every problem found.
    pub(super) fn check(self) -> Result<Policy, Vec<String>> {
        let mut problems = Vec::new();

        let rules = match self.rules {
            Some(entries) => check_rules(entries, &mut problems),
            None => {
                problems.push("rules: required (write \"rules: []\" to allow nothing)".to_owned());
                Vec::new()
            }
        };

        let images = match self.images {
            None => None,
            Some(None) => {
                problems.push(
                    "images: is empty (list images.allow, or remove images to allow every image)"
                        .to_owned(),
                );
                None
            }
            Some(Some(entry)) => Some(check_images(entry, &mut problems)),
        };

        let mut pod_security = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (namespace, entry) in self.namespaces.unwrap_or_default().0 {
            let place = match is_dns1123_label(&namespace) {
                Ok(()) => format!("namespaces.{namespace}"),
                Err(why) => {
                    problems.push(format!("namespaces: {why}"));
                    format!("namespaces[{namespace:?}]")
                }
            };
            if !seen.insert(namespace.clone()) {
                problems.push(format!("{place}: listed more than once"));
                continue;
            }
            match entry.unwrap_or_default().pod_security.as_deref() {
                None => {}
                Some("") => problems.push(format!("{place}.podSecurity: must not be empty")),
                Some(name) => match PodSecurityProfile::parse(name) {
                    Some(profile) => {
                        pod_security.insert(namespace, profile);
                    }
                    None => problems.push(format!(
                        "{place}.podSecurity: unknown profile {name:?} \
                         (expected baseline or restricted; privileged is not offered)"
                    )),
                },
            }
        }

        if problems.is_empty() {
            Ok(Policy {
                rules,
                images,
                pod_security,
            })
        } else {
            Err(problems)
        }
    }
}

fn check_rules(entries: Vec<RuleEntry>, problems: &mut Vec<String>) -> Vec<Rule> {
    // Rule name to the index of the rule that first used it.
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut rules = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let place = format!("rules[{i}]");

        if entry.name.is_empty() {
            problems.push(format!(
                "{place}.name: required (a unique name, used in logs)"
            ));
        } else if entry.name.chars().any(char::is_control) {
            problems.push(format!(
                "{place}.name: {:?} must not contain control characters",
                entry.name
            ));
        } else if let Some(first) = names.get(&entry.name) {
            problems.push(format!(
                "{place}.name: {:?} is already the name of rules[{first}]",
                entry.name
            ));
        } else {
            names.insert(entry.name.clone(), i);
        }

        if entry.subjects.is_empty() && entry.groups.is_empty() {
            problems.push(format!(
                "{place}: needs subjects or groups (a rule with neither matches no caller)"
            ));
        }
        for (list, values) in [("subjects", &entry.subjects), ("groups", &entry.groups)] {
            for (j, value) in values.iter().enumerate() {
                if value.is_empty() {
                    problems.push(format!("{place}.{list}[{j}]: must not be empty"));
                }
            }
        }

        if entry.namespaces.is_empty() {
            problems.push(format!(
                "{place}.namespaces: must list at least one namespace pattern \
                 (\"*\" for every namespace)"
            ));
        }
        for (j, pattern) in entry.namespaces.iter().enumerate() {
            if let Some(why) = namespace_pattern_problem(pattern) {
                problems.push(format!("{place}.namespaces[{j}]: {why}"));
            }
        }

        if entry.actions.is_empty() {
            problems.push(format!(
                "{place}.actions: must list at least one action (\"*\" for every action)"
            ));
        }
        let mut actions = Actions::NONE;
        for (j, name) in entry.actions.iter().enumerate() {
            match name.as_str() {
                "" => problems.push(format!("{place}.actions[{j}]: must not be empty")),
                "*" => actions = Actions::ALL,
                _ => match Action::parse(name) {
                    Some(action) => actions.insert(action),
                    None => problems.push(format!(
                        "{place}.actions[{j}]: unknown action {name:?} \
                         (expected deploy, status, list, delete, logs, scale, restart, rollback or *)"
                    )),
                },
            }
        }

        let references = entry.references.unwrap_or_default();
        let mut patterns = |key: &str, list: &[String]| {
            for (j, pattern) in list.iter().enumerate() {
                if let Some(why) = name_pattern_problem(pattern) {
                    problems.push(format!("{place}.references.{key}[{j}]: {why}"));
                }
            }
            list.iter().map(|p| Glob::new(p)).collect()
        };
        let references = References {
            secrets: patterns("secrets", &references.secrets),
            config_maps: patterns("configMaps", &references.config_maps),
            service_accounts: patterns("serviceAccounts", &references.service_accounts),
        };

        rules.push(Rule {
            name: entry.name,
            subjects: entry.subjects,
            groups: entry.groups,
            namespaces: entry.namespaces.iter().map(|p| Glob::new(p)).collect(),
            actions,
            references,
        });
    }
    rules
}

/// Why `pattern` can never match a namespace (a DNS-1123 label), if it cannot.
fn namespace_pattern_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("must not be empty".to_owned());
    }
    let why = if pattern
        .chars()
        .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*'))
    {
        "only a-z, 0-9, '-' and '*' may appear (namespaces are DNS-1123 labels)".to_owned()
    } else if pattern.starts_with('-') || pattern.ends_with('-') {
        "a namespace starts and ends with a letter or digit".to_owned()
    } else if pattern.chars().filter(|&c| c != '*').count() > DNS1123_LABEL_MAX_LEN {
        format!("a namespace has at most {DNS1123_LABEL_MAX_LEN} characters")
    } else {
        return None;
    };
    Some(format!("{pattern:?} can never match a namespace: {why}"))
}

/// Why `pattern` can never match the name of a Secret, ConfigMap or ServiceAccount (a
/// DNS-1123 subdomain), if it cannot.
fn name_pattern_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("must not be empty".to_owned());
    }
    let why = if pattern
        .chars()
        .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '*')))
    {
        "only a-z, 0-9, '-', '.' and '*' may appear (names are DNS-1123 subdomains)".to_owned()
    } else if pattern.starts_with(['-', '.']) || pattern.ends_with(['-', '.']) {
        "a name starts and ends with a letter or digit".to_owned()
    } else if pattern.chars().filter(|&c| c != '*').count() > DNS1123_SUBDOMAIN_MAX_LEN {
        format!("a name has at most {DNS1123_SUBDOMAIN_MAX_LEN} characters")
    } else {
        return None;
    };
    Some(format!("{pattern:?} can never match a name: {why}"))
}

fn check_images(entry: ImagesEntry, problems: &mut Vec<String>) -> ImagePolicy {
    if entry.allow.is_empty() {
        problems.push(
            "images.allow: must list at least one pattern (\"**\" allows every image)".to_owned(),
        );
    }
    for (i, pattern) in entry.allow.iter().enumerate() {
        if let Some(why) = pattern_problem(pattern) {
            problems.push(format!("images.allow[{i}]: {why}"));
        }
    }
    for (i, tag) in entry.denied_tags.iter().enumerate() {
        if let Some(why) = tag_problem(tag) {
            problems.push(format!("images.deniedTags[{i}]: {why}"));
        }
    }
    ImagePolicy {
        allow: entry.allow.iter().map(|p| Glob::new(p)).collect(),
        require_digest: entry.require_digest,
        denied_tags: entry.denied_tags,
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{Policy, PolicyError};

    /// The problems `yaml` is refused for.
    fn problems(yaml: &str) -> Vec<String> {
        match Policy::from_yaml(yaml) {
            Ok(policy) => panic!("should be refused, loaded: {policy:?}"),
            Err(PolicyError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("should be invalid, got: {other}"),
        }
    }

    const RULE: &str =
        "rules:\n- {name: r, subjects: [a], namespaces: [\"*\"], actions: [\"*\"]}\n";

    #[test]
    fn every_problem_is_reported_at_its_place() {
        let long = "a".repeat(64);
        let long_namespace = format!(
            "rules[0].namespaces[0]: \"{long}*\" can never match a namespace: \
             a namespace has at most 63 characters"
        );
        let long_tag = format!(
            "images.deniedTags[4]: \"{}\" is not a valid tag: must be at most 128 characters",
            "t".repeat(129)
        );
        #[rustfmt::skip]
        let cases: Vec<(String, Vec<&str>)> = vec![
            ("images: {allow: [\"**\"]}".into(),
             vec!["rules: required (write \"rules: []\" to allow nothing)"]),
            ("rules:\n- {subjects: [a], namespaces: [x], actions: [list]}".into(),
             vec!["rules[0].name: required (a unique name, used in logs)"]),
            ("rules:\n- {name: \"\", subjects: [a], namespaces: [x], actions: [list]}".into(),
             vec!["rules[0].name: required (a unique name, used in logs)"]),
            ("rules:\n- {name: \"a\\tb\", subjects: [a], namespaces: [x], actions: [list]}".into(),
             vec!["rules[0].name: \"a\\tb\" must not contain control characters"]),
            ("rules:\n- {name: ci, subjects: [a], namespaces: [x], actions: [list]}\n\
              - {name: other, subjects: [a], namespaces: [x], actions: [list]}\n\
              - {name: ci, subjects: [b], namespaces: [y], actions: [list]}".into(),
             vec!["rules[2].name: \"ci\" is already the name of rules[0]"]),
            ("rules:\n- {name: r, namespaces: [x], actions: [list]}".into(),
             vec!["rules[0]: needs subjects or groups (a rule with neither matches no caller)"]),
            ("rules:\n- {name: r, subjects: [], groups: [], namespaces: [x], actions: [list]}".into(),
             vec!["rules[0]: needs subjects or groups (a rule with neither matches no caller)"]),
            ("rules:\n- {name: r, subjects: [a, \"\"], groups: [\"\"], namespaces: [x], actions: [list]}".into(),
             vec!["rules[0].subjects[1]: must not be empty", "rules[0].groups[0]: must not be empty"]),
            ("rules:\n- {name: r, subjects: [a], actions: [list]}".into(),
             vec!["rules[0].namespaces: must list at least one namespace pattern (\"*\" for every namespace)"]),
            ("rules:\n- {name: r, subjects: [a], namespaces: [], actions: [list]}".into(),
             vec!["rules[0].namespaces: must list at least one namespace pattern (\"*\" for every namespace)"]),
            ("rules:\n- {name: r, subjects: [a], namespaces: [ok, \"\", Team-A, \"team_a\", \"team-*/x\"], actions: [list]}".into(),
             vec!["rules[0].namespaces[1]: must not be empty",
                  "rules[0].namespaces[2]: \"Team-A\" can never match a namespace: only a-z, 0-9, '-' and '*' may appear (namespaces are DNS-1123 labels)",
                  "rules[0].namespaces[3]: \"team_a\" can never match a namespace: only a-z, 0-9, '-' and '*' may appear (namespaces are DNS-1123 labels)",
                  "rules[0].namespaces[4]: \"team-*/x\" can never match a namespace: only a-z, 0-9, '-' and '*' may appear (namespaces are DNS-1123 labels)"]),
            ("rules:\n- {name: r, subjects: [a], namespaces: [\"-a*\", \"*-\"], actions: [list]}".into(),
             vec!["rules[0].namespaces[0]: \"-a*\" can never match a namespace: a namespace starts and ends with a letter or digit",
                  "rules[0].namespaces[1]: \"*-\" can never match a namespace: a namespace starts and ends with a letter or digit"]),
            (format!("rules:\n- {{name: r, subjects: [a], namespaces: [\"{long}*\"], actions: [list]}}"),
             vec![&long_namespace]),
            ("rules:\n- {name: r, subjects: [a], namespaces: [x]}".into(),
             vec!["rules[0].actions: must list at least one action (\"*\" for every action)"]),
            ("rules:\n- {name: r, subjects: [a], namespaces: [x], actions: [deploy, deploi, \"\", Deploy]}".into(),
             vec!["rules[0].actions[1]: unknown action \"deploi\" (expected deploy, status, list, delete, logs, scale, restart, rollback or *)",
                  "rules[0].actions[2]: must not be empty",
                  "rules[0].actions[3]: unknown action \"Deploy\" (expected deploy, status, list, delete, logs, scale, restart, rollback or *)"]),
            (format!("{RULE}images:\n"),
             vec!["images: is empty (list images.allow, or remove images to allow every image)"]),
            (format!("{RULE}images: {{requireDigest: true}}"),
             vec!["images.allow: must list at least one pattern (\"**\" allows every image)"]),
            (format!("{RULE}images: {{allow: []}}"),
             vec!["images.allow: must list at least one pattern (\"**\" allows every image)"]),
            (format!("{RULE}images:\n  allow: [\"\", \"ghcr.io/Acme/*\", \"ghcr.io/acme/app@sha256\", \"ghcr.io/acme app\"]"),
             vec!["images.allow[0]: must not be empty",
                  "images.allow[1]: \"ghcr.io/Acme/*\" can never match: image names are lower case",
                  "images.allow[2]: \"ghcr.io/acme/app@sha256\" contains '@', which cannot appear in an image name (a-z, 0-9, '.', '_', '-', '/', ':', '[', ']' and '*' only)",
                  "images.allow[3]: \"ghcr.io/acme app\" contains ' ', which cannot appear in an image name (a-z, 0-9, '.', '_', '-', '/', ':', '[', ']' and '*' only)"]),
            (format!("{RULE}images:\n  allow: [\"ghcr.io//x\", \"ghcr.io/\", \"nginx\", \"*\", \"docker.io/library/nginx:1.27\", \"ghcr.io/[x]\", \"docker.io/nginx\", \"docker.io/*\"]"),
             vec!["images.allow[0]: \"ghcr.io//x\" can never match: empty segment (leading, trailing or doubled '/')",
                  "images.allow[1]: \"ghcr.io/\" can never match: empty segment (leading, trailing or doubled '/')",
                  "images.allow[2]: \"nginx\" can never match: patterns match the full name, registry included (e.g. \"docker.io/library/nginx\")",
                  "images.allow[3]: \"*\" can never match: patterns match the full name, registry included (e.g. \"docker.io/library/nginx\")",
                  "images.allow[4]: \"docker.io/library/nginx:1.27\" can never match: ':' can only appear in the registry, before the first '/' (patterns match names without tag or digest)",
                  "images.allow[5]: \"ghcr.io/[x]\" can never match: '[' can only appear in the registry, before the first '/' (patterns match names without tag or digest)",
                  "images.allow[6]: \"docker.io/nginx\" can never match: Docker Hub names with one path component are normalised to \"docker.io/library/...\"",
                  "images.allow[7]: \"docker.io/*\" can never match: Docker Hub names with one path component are normalised to \"docker.io/library/...\""]),
            (format!("{RULE}images:\n  allow: [\"**\", \"**nginx\", \"[::1]:5000/*\", \"localhost:5000/**\", \"docker.io/**\", \"*.example.com/*/*\"]"),
             vec![]),
            (format!("{RULE}images:\n  allow: [\"**\"]\n  deniedTags: [latest, \"\", \"-rc\", \"a b\", \"{}\"]", "t".repeat(129)),
             vec!["images.deniedTags[1]: must not be empty",
                  "images.deniedTags[2]: \"-rc\" is not a valid tag: must start with a letter, digit or '_'",
                  "images.deniedTags[3]: \"a b\" is not a valid tag: only letters, digits, '_', '.' and '-' (found ' ')",
                  &long_tag]),
            (format!("{RULE}namespaces:\n  team-a: {{podSecurity: privileged}}\n  team-b: {{podSecurity: \"\"}}\n  Team-C: {{podSecurity: restricted}}\n  team-d: {{}}"),
             vec!["namespaces.team-a.podSecurity: unknown profile \"privileged\" (expected baseline or restricted; privileged is not offered)",
                  "namespaces.team-b.podSecurity: must not be empty",
                  "namespaces: \"Team-C\" is not a DNS-1123 label: must be lower case"]),
            (format!("{RULE}namespaces:\n  team-a: {{podSecurity: baseline}}\n  team-b:\n  team-a: {{podSecurity: restricted}}"),
             vec!["namespaces.team-a: listed more than once"]),
            (format!("{RULE}namespaces:\n  team-a:\n  team-b: {{}}"), vec![]),
            (format!("{RULE}namespaces:"), vec![]),
            ("rules:\n- {name: r, subjects: [a], namespaces: [x], actions: [deploy], references: {secrets: [\"\", Db, \"db_pw\", \"-db\", \"db.\"], configMaps: [\"*\", \"a.b-*\"], serviceAccounts: [\"x/y\"]}}".into(),
             vec!["rules[0].references.secrets[0]: must not be empty",
                  "rules[0].references.secrets[1]: \"Db\" can never match a name: only a-z, 0-9, '-', '.' and '*' may appear (names are DNS-1123 subdomains)",
                  "rules[0].references.secrets[2]: \"db_pw\" can never match a name: only a-z, 0-9, '-', '.' and '*' may appear (names are DNS-1123 subdomains)",
                  "rules[0].references.secrets[3]: \"-db\" can never match a name: a name starts and ends with a letter or digit",
                  "rules[0].references.secrets[4]: \"db.\" can never match a name: a name starts and ends with a letter or digit",
                  "rules[0].references.serviceAccounts[0]: \"x/y\" can never match a name: only a-z, 0-9, '-', '.' and '*' may appear (names are DNS-1123 subdomains)"]),
            ("rules:\n- {name: r, subjects: [a], namespaces: [x], actions: [deploy], references: {}}".into(), vec![]),
        ];
        for (yaml, want) in &cases {
            if want.is_empty() {
                if let Err(e) = crate::policy::Policy::from_yaml(yaml) {
                    panic!("should load:\n{yaml}\ngot: {e}");
                }
                continue;
            }
            assert_eq!(problems(yaml), *want, "for:\n{yaml}");
        }
    }

    #[test]
    fn problems_from_every_section_are_reported_together() {
        let yaml = "\
rules:
- name: a
  subjects: [x]
  namespaces: [UPPER]
  actions: [deploi]
- name: a
  namespaces: [x]
  actions: [list]
images:
  allow: []
namespaces:
  x: {podSecurity: privileged}
";
        assert_eq!(
            problems(yaml),
            [
                "rules[0].namespaces[0]: \"UPPER\" can never match a namespace: only a-z, 0-9, '-' and '*' may appear (namespaces are DNS-1123 labels)",
                "rules[0].actions[0]: unknown action \"deploi\" (expected deploy, status, list, delete, logs, scale, restart, rollback or *)",
                "rules[1].name: \"a\" is already the name of rules[0]",
                "rules[1]: needs subjects or groups (a rule with neither matches no caller)",
                "images.allow: must list at least one pattern (\"**\" allows every image)",
                "namespaces.x.podSecurity: unknown profile \"privileged\" (expected baseline or restricted; privileged is not offered)",
            ]
        );
    }
}
