//! The glob patterns of the policy file: `*` matches any run of characters except '/', `**`
//! (or any longer run of '*') matches any run of characters including '/', and every other
//! character matches only itself.
//!
//! Matching walks the pattern once, keeping the set of text positions reachable so far, so it
//! takes at most (pattern length × text length) steps whatever the pattern: no backtracking,
//! no recursion.

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Characters that must appear as they are.
    Literal(String),
    /// `*`: any run of characters without '/'.
    Star,
    /// `**`: any run of characters.
    DoubleStar,
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// Compile `pattern`. Every string is a pattern; checking that it makes sense for what it
    /// will match is the caller's business.
    pub(crate) fn new(pattern: &str) -> Self {
        let mut tokens = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            let stars = rest.len() - rest.trim_start_matches('*').len();
            if stars > 0 {
                tokens.push(if stars == 1 {
                    Token::Star
                } else {
                    Token::DoubleStar
                });
                rest = &rest[stars..];
            } else {
                let end = rest.find('*').unwrap_or(rest.len());
                tokens.push(Token::Literal(rest[..end].to_owned()));
                rest = &rest[end..];
            }
        }
        Self {
            pattern: pattern.to_owned(),
            tokens,
        }
    }

    /// The pattern itself when it has no wildcard, and so matches exactly one string.
    pub(crate) fn literal(&self) -> Option<&str> {
        (!self.pattern.contains('*')).then_some(self.pattern.as_str())
    }

    /// Whether the whole of `text` matches the pattern.
    pub(crate) fn matches(&self, text: &str) -> bool {
        if let Some(literal) = self.literal() {
            return literal == text;
        }
        // Byte positions are enough: '/' and '*' are ASCII, so they never fall inside a
        // multi-byte character, and literals compare byte for byte.
        let text = text.as_bytes();
        let n = text.len();
        // reach[i]: the tokens seen so far can match text[..i] exactly.
        let mut reach = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        reach[0] = true;
        for token in &self.tokens {
            next.fill(false);
            match token {
                Token::Literal(literal) => {
                    let literal = literal.as_bytes();
                    for (start, _) in reach.iter().enumerate().filter(|(_, r)| **r) {
                        if text[start..].starts_with(literal) {
                            next[start + literal.len()] = true;
                        }
                    }
                }
                Token::Star | Token::DoubleStar => {
                    let crosses_slash = *token == Token::DoubleStar;
                    // Once a start position is reached, every later position is too, until a
                    // '/' that a single star may not consume.
                    let mut open = false;
                    for i in 0..=n {
                        open |= reach[i];
                        next[i] = open;
                        if !crosses_slash && text.get(i) == Some(&b'/') {
                            open = false;
                        }
                    }
                }
            }
            std::mem::swap(&mut reach, &mut next);
            if !reach.contains(&true) {
                return false;
            }
        }
        reach[n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_documented() {
        #[rustfmt::skip]
        let cases = [
            // pattern, text, matches
            ("team-a", "team-a", true),
            ("team-a", "team-ab", false),
            ("team-a", "team-", false),
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "team-a", true),
            ("*", "a/b", false),
            ("team-*", "team-a", true),
            ("team-*", "team-", true),
            ("team-*", "teama", false),
            ("team-*", "my-team-a", false),
            ("*-prod", "shop-prod", true),
            ("*-prod", "shop-prod-2", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("a*b*c", "abcab", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("***", "a/b/c", true),
            ("**", "", true),
            ("**", "docker.io/library/nginx", true),
            // Wildcards stop at '/' unless doubled.
            ("docker.io/library/*", "docker.io/library/nginx", true),
            ("docker.io/library/*", "docker.io/library/a/b", false),
            ("docker.io/library/*", "docker.io/library", false),
            ("ghcr.io/acme/**", "ghcr.io/acme/app", true),
            ("ghcr.io/acme/**", "ghcr.io/acme/team/sub/app", true),
            ("ghcr.io/acme/**", "ghcr.io/acme", false),
            ("ghcr.io/acme/**", "ghcr.io/acmecorp/app", false),
            ("ghcr.io/*/app", "ghcr.io/acme/app", true),
            ("ghcr.io/*/app", "ghcr.io/acme/team/app", false),
            ("ghcr.io/**/app", "ghcr.io/acme/team/app", true),
            ("ghcr.io/**/app", "ghcr.io/app", false),
            ("**/nginx", "docker.io/library/nginx", true),
            ("*/nginx", "docker.io/library/nginx", false),
            ("*.example.com/**", "registry.example.com/a/b", true),
            ("*.example.com/**", "example.com/a", false),
            // Everything else is literal: '.', '?', '[', ']' have no special meaning.
            ("a.b", "a.b", true),
            ("a.b", "axb", false),
            ("a?", "ab", false),
            ("[::1]:5000/*", "[::1]:5000/app", true),
            ("[ab]", "a", false),
            // Multi-byte characters are matched whole.
            ("é*", "éa", true),
            ("*é", "aé", true),
            ("*é", "ae", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                want,
                "{pattern:?} against {text:?}"
            );
        }
    }

    #[test]
    fn patterns_that_backtracking_would_choke_on_are_answered() {
        // A backtracking matcher explores exponentially many ways to split the text between
        // the stars before it gives up; the position-set walk does not.
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "a*".repeat(50));
        assert!(!Glob::new(&pattern).matches(&text));
        let deep = format!("{}b", "**a/".repeat(50));
        assert!(!Glob::new(&deep).matches(&"a/".repeat(5_000)));
        assert!(Glob::new(&"a*".repeat(50)).matches(&text));
    }

    #[test]
    fn only_patterns_without_wildcards_are_literal() {
        assert_eq!(Glob::new("team-a").literal(), Some("team-a"));
        assert_eq!(Glob::new("team-*").literal(), None);
        assert_eq!(Glob::new("**").literal(), None);
    }
}
