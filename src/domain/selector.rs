//! Kubernetes label selectors ("app=web,tier!=db"): parsed and checked here, matched against a
//! pod's labels by the status hub, and printed back in canonical form for the API server's
//! `labelSelector` parameter.
//!
//! Supported requirements, comma-separated, whitespace tolerated around every token:
//! `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k` (does not
//! exist). Keys and values follow the label rules of [`names`](crate::domain::names). The
//! empty selector matches every pod.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::domain::names::{validate_label_key, validate_label_value};

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stable), as Kubernetes prints them.
    requirements: Vec<Requirement>,
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Operator,
    /// Values: one for `Equals` and `NotEquals`, at least one for `In` and `NotIn`, none for
    /// `Exists` and `DoesNotExist`.
    pub values: BTreeSet<String>,
}

/// The operator of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `k=v` or `k==v`: the label is present with this value.
    Equals,
    /// `k!=v`: the label is absent or has another value.
    NotEquals,
    /// `k in (a,b)`: the label is present with one of the values.
    In,
    /// `k notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `k`: the label is present.
    Exists,
    /// `!k`: the label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// The selector that matches everything.
    #[must_use]
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parse a selector. The empty string (or only whitespace) matches everything. The error
    /// names the rule, e.g. `expected ',' or the end after "a=b", found '='`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens: &tokens,
            position: 0,
        };
        let mut requirements = Vec::new();
        if !tokens.is_empty() {
            loop {
                requirements.push(parser.requirement()?);
                match parser.next() {
                    None => break,
                    Some(Token::Comma) => {}
                    Some(other) => {
                        return Err(format!(
                            "expected ',' or the end after {}, found {}",
                            describe_last(&requirements),
                            other.describe()
                        ));
                    }
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Whether this selector matches every pod.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    #[must_use]
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical form: requirements sorted by key, no spaces but around `in` and `notin`,
    /// `=` for equality, set values sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.iter().next().map_or("", String::as_str);
        let set = || {
            self.values
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({})", set()),
            Operator::NotIn => write!(f, "{key} notin ({})", set()),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

impl FromStr for LabelSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Open,
    Close,
    Comma,
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Not => "'!'".to_owned(),
            Token::Equals => "'='".to_owned(),
            Token::DoubleEquals => "'=='".to_owned(),
            Token::NotEquals => "'!='".to_owned(),
            Token::Open => "'('".to_owned(),
            Token::Close => "')'".to_owned(),
            Token::Comma => "','".to_owned(),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Token<'_>>, String> {
    let special =
        |c: char| c.is_whitespace() || matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>');
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let (token, len) = match c {
            c if c.is_whitespace() => (None, c.len_utf8()),
            '!' if rest.starts_with("!=") => (Some(Token::NotEquals), 2),
            '!' => (Some(Token::Not), 1),
            '=' if rest.starts_with("==") => (Some(Token::DoubleEquals), 2),
            '=' => (Some(Token::Equals), 1),
            '(' => (Some(Token::Open), 1),
            ')' => (Some(Token::Close), 1),
            ',' => (Some(Token::Comma), 1),
            '<' | '>' => {
                return Err(format!(
                    "operator '{c}' is not supported (use =, ==, !=, in, notin, key or !key)"
                ));
            }
            _ => {
                let len = rest.find(special).unwrap_or(rest.len());
                (Some(Token::Word(&rest[..len])), len)
            }
        };
        tokens.extend(token);
        rest = &rest[len..];
    }
    Ok(tokens)
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    position: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.position).copied()
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.peek();
        if token.is_some() {
            self.position += 1;
        }
        token
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator, values) = match self.next() {
            Some(Token::Not) => match self.next() {
                Some(Token::Word(key)) => (key, Operator::DoesNotExist, BTreeSet::new()),
                other => {
                    return Err(format!(
                        "expected a key after '!', found {}",
                        describe(other)
                    ));
                }
            },
            Some(Token::Word(key)) => {
                let (operator, values) = self.operation(key)?;
                (key, operator, values)
            }
            other => return Err(format!("expected a key, found {}", describe(other))),
        };
        validate_label_key(key)?;
        for value in &values {
            validate_label_value(value)?;
        }
        Ok(Requirement {
            key: key.to_owned(),
            operator,
            values,
        })
    }

    fn operation(&mut self, key: &str) -> Result<(Operator, BTreeSet<String>), String> {
        let operator = match self.peek() {
            None | Some(Token::Comma) => return Ok((Operator::Exists, BTreeSet::new())),
            Some(Token::Equals | Token::DoubleEquals) => Operator::Equals,
            Some(Token::NotEquals) => Operator::NotEquals,
            Some(Token::Word("in")) => Operator::In,
            Some(Token::Word("notin")) => Operator::NotIn,
            Some(other) => {
                return Err(format!(
                    "expected an operator (=, ==, !=, in, notin), ',' or the end after key {key:?}, found {}",
                    other.describe()
                ));
            }
        };
        self.position += 1;
        if operator == Operator::Equals || operator == Operator::NotEquals {
            // As in Kubernetes, "k=" selects the empty value.
            let value = match self.peek() {
                Some(Token::Word(value)) => {
                    self.position += 1;
                    value
                }
                None | Some(Token::Comma) => "",
                Some(other) => {
                    return Err(format!(
                        "expected a value after the operator of key {key:?}, found {}",
                        other.describe()
                    ));
                }
            };
            return Ok((operator, BTreeSet::from([value.to_owned()])));
        }
        let word = if operator == Operator::In {
            "in"
        } else {
            "notin"
        };
        match self.next() {
            Some(Token::Open) => {}
            other => {
                return Err(format!(
                    "expected '(' after '{word}' for key {key:?}, found {}",
                    describe(other)
                ));
            }
        }
        let values = self.value_set(key, word)?;
        Ok((operator, values))
    }

    /// The values of a set up to its ')'. Unlike Kubernetes, which reads "(a,)" as "a" and
    /// the empty value, an empty entry is refused: it is far more often a typo, and a set
    /// holding only the empty value would print as "()", which does not parse.
    fn value_set(&mut self, key: &str, word: &str) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            match self.next() {
                Some(Token::Word(value)) => {
                    values.insert(value.to_owned());
                }
                Some(Token::Close) if values.is_empty() => {
                    return Err(format!(
                        "the values of '{word}' for key {key:?} must not be empty"
                    ));
                }
                other => {
                    return Err(format!(
                        "expected a value in the values of '{word}' for key {key:?}, found {}",
                        describe(other)
                    ));
                }
            }
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => return Ok(values),
                None => {
                    return Err(format!(
                        "missing ')' after the values of '{word}' for key {key:?}"
                    ));
                }
                Some(other) => {
                    return Err(format!(
                        "expected ',' or ')' in the values of '{word}' for key {key:?}, found {}",
                        other.describe()
                    ));
                }
            }
        }
    }
}

fn describe(token: Option<Token<'_>>) -> String {
    token.map_or_else(|| "the end".to_owned(), |t| t.describe())
}

fn describe_last(requirements: &[Requirement]) -> String {
    requirements
        .last()
        .map_or_else(String::new, |r| format!("{:?}", r.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_parse_into_canonical_form() {
        let cases = [
            ("", ""),
            ("   ", ""),
            ("app=web", "app=web"),
            ("app==web", "app=web"),
            (" app = web ", "app=web"),
            ("app!=web", "app!=web"),
            ("app", "app"),
            ("!app", "!app"),
            ("! app", "!app"),
            ("app=", "app="),
            ("app==", "app="),
            ("Bad_Key.1!=X_y", "Bad_Key.1!=X_y"),
            ("app=,tier=db", "app=,tier=db"),
            ("tier in (db,web)", "tier in (db,web)"),
            ("tier in ( web , db )", "tier in (db,web)"),
            ("tier in (web,web)", "tier in (web)"),
            ("tier notin (db)", "tier notin (db)"),
            ("tier in(a)", "tier in (a)"),
            ("tier=db,app=web", "app=web,tier=db"),
            (
                "!legacy,example.com/team in (a,b),app.kubernetes.io/managed-by=k8s-deployer",
                "app.kubernetes.io/managed-by=k8s-deployer,example.com/team in (a,b),!legacy",
            ),
            ("in=x", "in=x"),
            ("a,b=c,!d", "a,b=c,!d"),
        ];
        for (input, canonical) in cases {
            let selector = LabelSelector::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse, got {e:?}"));
            assert_eq!(selector.to_string(), canonical, "{input:?}");
            let again = LabelSelector::parse(canonical).expect("canonical form parses");
            assert_eq!(again, selector, "{input:?} round trip");
        }
    }

    #[test]
    fn malformed_selectors_name_the_rule() {
        let cases = [
            ("a=b,", "expected a key, found the end"),
            (",a", "expected a key, found ','"),
            ("a=b=c", "expected ',' or the end after \"a=b\", found '='"),
            ("a b", "after key \"a\", found \"b\""),
            ("!", "expected a key after '!', found the end"),
            ("!=a", "expected a key, found '!='"),
            ("!a=b", "expected ',' or the end after \"!a\", found '='"),
            (
                "a in",
                "expected '(' after 'in' for key \"a\", found the end",
            ),
            ("a in b", "expected '(' after 'in'"),
            ("a in (b", "missing ')'"),
            (
                "a notin ()",
                "the values of 'notin' for key \"a\" must not be empty",
            ),
            (
                "a in (b c)",
                "expected ',' or ')' in the values of 'in' for key \"a\", found \"c\"",
            ),
            (
                "a in (b,)",
                "expected a value in the values of 'in' for key \"a\", found ')'",
            ),
            (
                "a in (,b)",
                "expected a value in the values of 'in' for key \"a\", found ','",
            ),
            ("a in (b,,c)", "found ','"),
            ("a in (b,", "found the end"),
            ("a in (b)(c)", "expected ',' or the end"),
            (
                "a=(b)",
                "expected a value after the operator of key \"a\", found '('",
            ),
            ("a>1", "operator '>' is not supported"),
            ("-bad=x", "\"-bad\" is not a valid label key"),
            ("a/b/c=x", "at most one '/'"),
            ("a=-x", "\"-x\" is not a valid label value"),
            ("a in (ok,no/pe)", "\"no/pe\" is not a valid label value"),
            (&format!("a={}", "v".repeat(64)), "at most 63 characters"),
        ];
        for (input, rule) in cases {
            match LabelSelector::parse(input) {
                Ok(selector) => panic!("{input:?} should be refused, parsed as {selector}"),
                Err(e) => {
                    assert!(e.contains(rule), "{input:?}: {e:?} should contain {rule:?}");
                    assert!(!e.ends_with('.'), "{input:?}: {e:?} ends with a period");
                }
            }
        }
    }

    #[test]
    fn selectors_match_labels() {
        let web = labels(&[("app", "web"), ("tier", "frontend"), ("empty", "")]);
        let none = labels(&[]);
        let cases = [
            ("", &web, true),
            ("", &none, true),
            ("app=web", &web, true),
            ("app==web", &web, true),
            ("app=db", &web, false),
            ("app=web", &none, false),
            ("app!=db", &web, true),
            ("app!=web", &web, false),
            ("app!=web", &none, true),
            ("app", &web, true),
            ("app", &none, false),
            ("!app", &web, false),
            ("!app", &none, true),
            ("empty=", &web, true),
            ("empty", &web, true),
            ("app=", &web, false),
            ("tier in (frontend,backend)", &web, true),
            ("tier in (backend)", &web, false),
            ("tier in (backend)", &none, false),
            ("tier notin (backend)", &web, true),
            ("tier notin (frontend)", &web, false),
            ("tier notin (frontend)", &none, true),
            ("app=web,tier=frontend", &web, true),
            ("app=web,tier=backend", &web, false),
            ("app=web,!legacy", &web, true),
        ];
        for (input, labels, want) in cases {
            let selector = LabelSelector::parse(input).expect("valid selector");
            assert_eq!(selector.matches(labels), want, "{input:?} on {labels:?}");
        }
        assert!(LabelSelector::everything().matches(&web));
        assert!(LabelSelector::everything().is_empty());
    }
}
