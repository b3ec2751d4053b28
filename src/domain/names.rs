//! Kubernetes naming rules (DNS-1123 names, label and annotation keys and values, environment
//! variable names, port names, resource quantities) and pod name generation.
//!
//! Every check returns `Err` with a lower-case message that quotes the value and names the
//! rule, e.g. `"Web" is not a DNS-1123 label: must be lower case`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::domain::image::ImageReference;

/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX_LEN: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;
/// Longest label value, and longest name part of a label or annotation key.
pub const LABEL_VALUE_MAX_LEN: usize = 63;
/// Longest IANA service name (port name).
pub const IANA_SERVICE_NAME_MAX_LEN: usize = 15;

/// Characters of a generated name's suffix: those of Kubernetes' `generateName`, without
/// vowels and look-alikes, so that no word is spelt by accident.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generated name's suffix.
const SUFFIX_LEN: usize = 5;
/// Longest base of a generated name: room is left for '-' and the suffix in a 63-character
/// label.
const MAX_BASE_LEN: usize = DNS1123_LABEL_MAX_LEN - 1 - SUFFIX_LEN;

/// A DNS-1123 label: 1 to 63 characters of `[a-z0-9-]`, starting and ending with a letter or
/// digit (namespaces, the pods this service names).
pub fn is_dns1123_label(value: &str) -> Result<(), String> {
    dns1123_label_rule(value).map_err(|why| format!("{value:?} is not a DNS-1123 label: {why}"))
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated parts each of `[a-z0-9-]`
/// starting and ending with a letter or digit (any pod name Kubernetes accepts). As in
/// Kubernetes, a part is not itself limited to 63 characters.
pub fn is_dns1123_subdomain(value: &str) -> Result<(), String> {
    dns1123_subdomain_rule(value)
        .map_err(|why| format!("{value:?} is not a DNS-1123 subdomain: {why}"))
}

/// A label key: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63
/// characters of `[A-Za-z0-9_.-]` starting and ending with a letter or digit.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    qualified_name_rule(key).map_err(|why| format!("{key:?} is not a valid label key: {why}"))
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]` starting and ending
/// with a letter or digit.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    name_part_rule(value).map_err(|why| format!("{value:?} is not a valid label value: {why}"))
}

/// An annotation key: the label key syntax; as in Kubernetes, the prefix is checked without
/// regard to case.
pub fn validate_annotation_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix.to_ascii_lowercase()), name),
        None => (None, key),
    };
    let normalised = match prefix {
        Some(prefix) => format!("{prefix}/{name}"),
        None => name.to_owned(),
    };
    qualified_name_rule(&normalised)
        .map_err(|why| format!("{key:?} is not a valid annotation key: {why}"))
}

/// An environment variable name, as the API promises: `[A-Za-z_][A-Za-z0-9_.-]*`. (Kubernetes
/// itself accepts any printable ASCII but '=' since 1.30; this stricter rule keeps names
/// usable from a shell.)
pub fn is_env_var_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(format!(
            "must contain only letters, digits, '_', '.' and '-' (found {c:?})"
        ))
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        Some("must start with a letter or '_'".to_owned())
    } else {
        None
    };
    match why {
        Some(why) => Err(format!(
            "{name:?} is not a valid environment variable name: {why}"
        )),
        None => Ok(()),
    }
}

/// An IANA service name (a port name): 1 to 15 characters of `[a-z0-9-]`, at least one
/// letter, no '-' at either end and no "--".
pub fn is_iana_service_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > IANA_SERVICE_NAME_MAX_LEN {
        Some(format!(
            "must be at most {IANA_SERVICE_NAME_MAX_LEN} characters, not {}",
            name.chars().count()
        ))
    } else if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        Some(format!(
            "must contain only lower-case letters, digits and '-' (found {c:?})"
        ))
    } else if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        Some("must contain at least one letter".to_owned())
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("must start and end with a letter or digit".to_owned())
    } else if name.contains("--") {
        Some("must not contain \"--\"".to_owned())
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("{name:?} is not a valid port name: {why}")),
        None => Ok(()),
    }
}

/// A non-negative Kubernetes resource quantity: a decimal number ("1", "0.5", ".5", "1.")
/// with an optional suffix: binary `Ki Mi Gi Ti Pi Ei`, decimal `n u m k M G T P E`, or an
/// exponent `e3` / `E-2`. Negative quantities are refused, and so are quantities too large
/// for [`quantity_nanos`] (beyond 10^29).
pub fn validate_quantity(value: &str) -> Result<(), String> {
    parse_quantity(value)
        .map(|_| ())
        .map_err(|why| format!("{value:?} is not a valid quantity: {why}"))
}

/// The value of a quantity (see [`validate_quantity`]) in billionths of its unit, rounded up
/// as Kubernetes rounds to nano precision: "250m" is 250_000_000, "1Ki" is 1024 * 10^9.
/// `None` when the quantity is invalid. For comparing a limit with its request.
#[must_use]
pub fn quantity_nanos(value: &str) -> Option<u128> {
    parse_quantity(value).ok()
}

/// A pod name for `image`: the image's last path component, made a DNS-1123 label (lower
/// case, other characters replaced by '-', at most 57 characters; "pod" when nothing is
/// left), then '-' and a 5-character suffix. With a `seed` (the Deploy request_id) the suffix
/// is derived from its SHA-256, so retries of one request get the same name; without one it
/// is random. Always a valid DNS-1123 label.
#[must_use]
pub fn generate_pod_name(image: &ImageReference, seed: Option<&str>) -> String {
    let entropy = match seed {
        Some(seed) => seeded_entropy(seed),
        None => random_entropy(),
    };
    name_with_suffix(image.last_path_component(), entropy)
}

fn name_with_suffix(component: &str, mut entropy: u64) -> String {
    let mut name = pod_name_base(component);
    name.push('-');
    let radix = SUFFIX_ALPHABET.len() as u64;
    for _ in 0..SUFFIX_LEN {
        // `entropy % radix` is below the alphabet's length, so the index is in range.
        let index = usize::try_from(entropy % radix).unwrap_or(0);
        name.push(char::from(SUFFIX_ALPHABET[index]));
        entropy /= radix;
    }
    name
}

fn pod_name_base(component: &str) -> String {
    let mut base = String::with_capacity(component.len().min(MAX_BASE_LEN));
    for c in component.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            base.push(c);
        } else if !base.is_empty() && !base.ends_with('-') {
            base.push('-');
        }
        if base.len() >= MAX_BASE_LEN {
            break;
        }
    }
    // Only ASCII was pushed, so byte lengths are character counts.
    base.truncate(MAX_BASE_LEN);
    while base.ends_with('-') {
        base.pop();
    }
    if base.is_empty() {
        base.push_str("pod");
    }
    base
}

fn seeded_entropy(seed: &str) -> u64 {
    let digest = Sha256::digest(seed.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

fn random_entropy() -> u64 {
    // RandomState is freshly keyed per instance; the counter and the clock make two names
    // drawn in the same instant differ even if the keys repeat.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

fn dns1123_label_rule(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > DNS1123_LABEL_MAX_LEN {
        return Err(format!(
            "must be at most {DNS1123_LABEL_MAX_LEN} characters, not {}",
            value.chars().count()
        ));
    }
    dns1123_chars_rule(value, "lower-case letters, digits and '-'")
}

fn dns1123_subdomain_rule(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        return Err(format!(
            "must be at most {DNS1123_SUBDOMAIN_MAX_LEN} characters, not {}",
            value.chars().count()
        ));
    }
    for part in value.split('.') {
        if part.is_empty() {
            return Err(
                "must not have an empty part (leading, trailing or doubled '.')".to_owned(),
            );
        }
        dns1123_chars_rule(part, "lower-case letters, digits, '-' and '.'")?;
    }
    Ok(())
}

/// `[a-z0-9-]+` starting and ending with a letter or digit; `allowed` describes the characters
/// of the whole name for the message.
fn dns1123_chars_rule(part: &str, allowed: &str) -> Result<(), String> {
    if part.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lower case".to_owned());
    }
    if let Some(c) = part
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(format!("must contain only {allowed} (found {c:?})"));
    }
    if part.starts_with('-') || part.ends_with('-') {
        return Err("each part must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

/// `[prefix/]name` with a DNS-1123 subdomain prefix.
fn qualified_name_rule(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err("must contain at most one '/'".to_owned());
            }
            if prefix.is_empty() {
                return Err("the prefix before '/' must not be empty".to_owned());
            }
            dns1123_subdomain_rule(prefix)
                .map_err(|why| format!("prefix {prefix:?} is not a DNS-1123 subdomain: {why}"))?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("the name after '/' must not be empty".to_owned());
    }
    name_part_rule(name).map_err(|why| {
        if name.len() == key.len() {
            why
        } else {
            format!("name part {name:?} {why}")
        }
    })
}

/// At most 63 characters of `[A-Za-z0-9_.-]`, starting and ending with a letter or digit
/// (label values, the name part of keys, request ids).
pub(crate) fn name_part_rule(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > LABEL_VALUE_MAX_LEN {
        return Err(format!(
            "must be at most {LABEL_VALUE_MAX_LEN} characters, not {}",
            value.chars().count()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "must contain only letters, digits, '_', '.' and '-' (found {c:?})"
        ));
    }
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    if !value.as_bytes().first().is_some_and(alnum) || !value.as_bytes().last().is_some_and(alnum) {
        return Err("must start and end with a letter or digit".to_owned());
    }
    Ok(())
}

/// Parse a quantity into nano-units, rounded up.
fn parse_quantity(value: &str) -> Result<u128, String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let (negative, body) = match value.as_bytes()[0] {
        b'-' => (true, &value[1..]),
        b'+' => (false, &value[1..]),
        _ => (false, value),
    };
    let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
    let (int_digits, after) = body.split_at(int_len);
    let (frac_digits, suffix) = match after.strip_prefix('.') {
        Some(after_point) => {
            let frac_len = after_point.bytes().take_while(u8::is_ascii_digit).count();
            after_point.split_at(frac_len)
        }
        None => ("", after),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err("must start with a number, e.g. \"250m\" or \"64Mi\"".to_owned());
    }
    let (binary_exponent, decimal_exponent) = quantity_suffix(suffix)?;
    if negative {
        return Err("must not be negative".to_owned());
    }

    // The value is digits * 2^binary_exponent * 10^(decimal_exponent - frac_len); in nano-units
    // that is digits * 2^binary_exponent * 10^power.
    let mut digits: Vec<u8> = int_digits
        .bytes()
        .chain(frac_digits.bytes())
        .map(|b| b - b'0')
        .skip_while(|&d| d == 0)
        .collect();
    if digits.is_empty() {
        return Ok(0);
    }
    for _ in 0..binary_exponent {
        double_decimal(&mut digits);
    }
    let frac_len = i64::try_from(frac_digits.len()).unwrap_or(i64::MAX);
    let power = decimal_exponent.saturating_add(9).saturating_sub(frac_len);
    let too_large = || "is too large".to_owned();
    let (int_part, rounds_up) = if power >= 0 {
        // u128 has 39 decimal digits: anything longer overflows.
        let zeros = usize::try_from(power).map_err(|_| too_large())?;
        if digits.len().saturating_add(zeros) > 39 {
            return Err(too_large());
        }
        digits.resize(digits.len() + zeros, 0);
        (&digits[..], false)
    } else {
        let dropped = usize::try_from(power.unsigned_abs()).unwrap_or(usize::MAX);
        let keep = digits.len().saturating_sub(dropped);
        let (int_part, fraction) = digits.split_at(keep);
        (int_part, fraction.iter().any(|&d| d != 0))
    };
    let mut nanos: u128 = 0;
    for &d in int_part {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(d)))
            .ok_or_else(too_large)?;
    }
    if rounds_up {
        nanos = nanos.checked_add(1).ok_or_else(too_large)?;
    }
    Ok(nanos)
}

/// The suffix's power of two and power of ten.
fn quantity_suffix(suffix: &str) -> Result<(u32, i64), String> {
    Ok(match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let exponent = suffix
                .strip_prefix(['e', 'E'])
                .and_then(parse_exponent)
                .ok_or_else(|| {
                    format!(
                        "unknown suffix {suffix:?} (one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E, or an exponent such as e3)"
                    )
                })?;
            (0, exponent)
        }
    })
}

/// `[+-]?[0-9]+`, saturated far beyond any representable quantity.
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.parse::<i64>().unwrap_or(i64::MAX).min(1_000_000);
    Some(if negative { -magnitude } else { magnitude })
}

/// Multiply a big-endian decimal digit string by two.
fn double_decimal(digits: &mut Vec<u8>) {
    let mut carry = 0;
    for d in digits.iter_mut().rev() {
        let doubled = *d * 2 + carry;
        *d = doubled % 10;
        carry = doubled / 10;
    }
    if carry > 0 {
        digits.insert(0, carry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(result: Result<(), String>, want: Option<&str>, input: &str) {
        match (result, want) {
            (Ok(()), None) => {}
            (Ok(()), Some(rule)) => panic!("{input:?} should be refused with {rule:?}"),
            (Err(e), None) => panic!("{input:?} should be accepted, got {e:?}"),
            (Err(e), Some(rule)) => {
                assert!(e.contains(rule), "{input:?}: {e:?} should contain {rule:?}");
                assert!(!e.ends_with('.'), "{input:?}: {e:?} ends with a period");
            }
        }
    }

    #[test]
    fn dns1123_labels() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        let cases: &[(&str, Option<&str>)] = &[
            ("a", None),
            ("web-1", None),
            ("0abc", None),
            (&long, None),
            ("", Some("must not be empty")),
            (&too_long, Some("at most 63 characters, not 64")),
            ("Web", Some("must be lower case")),
            ("web_1", Some("found '_'")),
            ("a.b", Some("found '.'")),
            ("-web", Some("start and end with a letter or digit")),
            ("web-", Some("start and end with a letter or digit")),
        ];
        for (input, want) in cases {
            check(is_dns1123_label(input), *want, input);
        }
    }

    #[test]
    fn dns1123_subdomains() {
        let long_part = "a".repeat(70);
        let max = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        let too_long = "a".repeat(254);
        let cases: &[(&str, Option<&str>)] = &[
            ("web", None),
            ("web.example.com", None),
            ("a-1.b-2", None),
            (&long_part, None),
            (&max, None),
            ("", Some("must not be empty")),
            (&too_long, Some("at most 253 characters")),
            ("web.", Some("empty part")),
            (".web", Some("empty part")),
            ("a..b", Some("empty part")),
            ("Web.com", Some("must be lower case")),
            ("a.-b", Some("start and end with a letter or digit")),
            ("a_b", Some("found '_'")),
        ];
        for (input, want) in cases {
            check(is_dns1123_subdomain(input), *want, input);
        }
    }

    #[test]
    fn label_keys_and_values() {
        let name63 = "n".repeat(63);
        let name64 = "n".repeat(64);
        let long_prefix = format!("{}/x", "p".repeat(254));
        let keys: &[(&str, Option<&str>)] = &[
            ("app", None),
            ("App_Name.v-1", None),
            ("example.com/tier", None),
            ("app.kubernetes.io/name", None),
            (&name63, None),
            ("", Some("must not be empty")),
            (&name64, Some("at most 63 characters")),
            ("Bad Key", Some("found ' '")),
            ("-app", Some("start and end with a letter or digit")),
            ("app_", Some("start and end with a letter or digit")),
            ("/app", Some("prefix before '/' must not be empty")),
            ("example.com/", Some("name after '/' must not be empty")),
            ("a/b/c", Some("at most one '/'")),
            (
                "Example.com/app",
                Some("prefix \"Example.com\" is not a DNS-1123 subdomain"),
            ),
            ("ex_ample.com/app", Some("is not a DNS-1123 subdomain")),
            (&long_prefix, Some("at most 253 characters")),
            (
                "example.com/-x",
                Some("name part \"-x\" must start and end"),
            ),
        ];
        for (input, want) in keys {
            check(validate_label_key(input), *want, input);
            if want.is_some() {
                let e = validate_label_key(input).unwrap_err();
                assert!(e.contains("is not a valid label key"), "{e:?}");
            }
        }
        let values: &[(&str, Option<&str>)] = &[
            ("", None),
            ("v1", None),
            ("A.b_c-D", None),
            (&name63, None),
            (&name64, Some("at most 63 characters")),
            ("a b", Some("found ' '")),
            ("a/b", Some("found '/'")),
            ("-a", Some("start and end with a letter or digit")),
            ("a.", Some("start and end with a letter or digit")),
        ];
        for (input, want) in values {
            check(validate_label_value(input), *want, input);
        }
    }

    #[test]
    fn annotation_keys_follow_label_keys_with_a_case_blind_prefix() {
        let cases: &[(&str, Option<&str>)] = &[
            ("note", None),
            ("example.com/note", None),
            ("Example.COM/Note", None),
            ("", Some("must not be empty")),
            ("a b", Some("is not a valid annotation key")),
            ("a/b/c", Some("at most one '/'")),
        ];
        for (input, want) in cases {
            check(validate_annotation_key(input), *want, input);
        }
    }

    #[test]
    fn env_var_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("PATH", None),
            ("_x", None),
            ("my.var-1", None),
            ("a1", None),
            ("", Some("must not be empty")),
            ("1A", Some("must start with a letter or '_'")),
            ("-A", Some("must start with a letter or '_'")),
            (".A", Some("must start with a letter or '_'")),
            ("A=B", Some("found '='")),
            ("A B", Some("found ' '")),
            ("É", Some("found 'É'")),
        ];
        for (input, want) in cases {
            check(is_env_var_name(input), *want, input);
        }
    }

    #[test]
    fn iana_service_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http", None),
            ("web-8080", None),
            ("a", None),
            ("h2c", None),
            ("abcdefghijklmno", None),
            ("", Some("must not be empty")),
            ("abcdefghijklmnop", Some("at most 15 characters")),
            ("HTTP", Some("found 'H'")),
            ("web_1", Some("found '_'")),
            ("8080", Some("at least one letter")),
            ("-web", Some("start and end with a letter or digit")),
            ("web-", Some("start and end with a letter or digit")),
            ("we--b", Some("must not contain \"--\"")),
        ];
        for (input, want) in cases {
            check(is_iana_service_name(input), *want, input);
        }
    }

    #[test]
    fn quantities_parse_to_nano_units() {
        const NANO: u128 = 1_000_000_000;
        let cases: &[(&str, u128)] = &[
            ("0", 0),
            ("1", NANO),
            ("+1", NANO),
            ("250m", 250_000_000),
            ("0.5", NANO / 2),
            (".5", NANO / 2),
            ("1.", NANO),
            ("1.5Gi", 3 * (1 << 29) * NANO),
            ("64Mi", 64 * (1 << 20) * NANO),
            ("1Ki", 1024 * NANO),
            ("1Ei", (1 << 60) * NANO),
            ("1k", 1000 * NANO),
            ("2M", 2_000_000 * NANO),
            ("1G", 1_000_000_000 * NANO),
            ("1E", 1_000_000_000_000_000_000 * NANO),
            ("100u", 100_000),
            ("5n", 5),
            ("1e3", 1000 * NANO),
            ("1E3", 1000 * NANO),
            ("1e+3", 1000 * NANO),
            ("15e-1", 3 * NANO / 2),
            ("1.25e2", 125 * NANO),
            ("0.0000000001", 1),
            ("0.1n", 1),
            ("1e-100", 1),
            ("000100m", 100_000_000),
            (
                "0.000000000000000000000000000000000000000000000000000001",
                1,
            ),
            (
                "1.000000000000000000000000000000000000000000000000000000",
                NANO,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(quantity_nanos(input), Some(*want), "{input:?}");
            check(validate_quantity(input), None, input);
        }
        assert!(quantity_nanos("2Gi") > quantity_nanos("2G"));
        assert!(quantity_nanos("0.5") == quantity_nanos("500m"));
    }

    #[test]
    fn malformed_quantities_name_the_rule() {
        let cases: &[(&str, &str)] = &[
            ("", "must not be empty"),
            ("-1", "must not be negative"),
            ("-100m", "must not be negative"),
            ("Mi", "must start with a number"),
            (".", "must start with a number"),
            ("+", "must start with a number"),
            (" 1", "must start with a number"),
            ("1 ", "unknown suffix \" \""),
            ("1K", "unknown suffix \"K\""),
            ("1ki", "unknown suffix \"ki\""),
            ("1mi", "unknown suffix \"mi\""),
            ("1e", "unknown suffix \"e\""),
            ("1e3Mi", "unknown suffix \"e3Mi\""),
            ("1e1.5", "unknown suffix"),
            ("1.2.3", "unknown suffix \".3\""),
            ("1,5", "unknown suffix"),
            ("1e40", "is too large"),
            ("1e999999999999999999999", "is too large"),
            ("999999999999999999999999999999999999", "is too large"),
        ];
        for (input, rule) in cases {
            check(validate_quantity(input), Some(rule), input);
            assert_eq!(quantity_nanos(input), None, "{input:?}");
        }
    }

    fn assert_label(name: &str, context: &str) {
        assert!(
            is_dns1123_label(name).is_ok(),
            "{name:?} (from {context:?}) is not a DNS-1123 label"
        );
        let (_, suffix) = name.rsplit_once('-').expect("a suffix after '-'");
        assert_eq!(suffix.len(), SUFFIX_LEN, "{name:?}");
        assert!(
            suffix.bytes().all(|b| SUFFIX_ALPHABET.contains(&b)),
            "{name:?}"
        );
    }

    #[test]
    fn generated_names_derive_from_the_image() {
        let cases = [
            ("nginx:1.27", "nginx"),
            ("docker.io/library/nginx", "nginx"),
            ("ghcr.io/org/my_app.server", "my-app-server"),
            ("a__b---c", "a-b-c"),
            ("registry.io/team/0", "0"),
        ];
        for (image, base) in cases {
            let image = ImageReference::parse(image).expect("valid reference");
            let name = generate_pod_name(&image, None);
            assert_label(&name, image.as_str());
            assert_eq!(name.rsplit_once('-').map(|(b, _)| b), Some(base), "{image}");
        }
        let long = ImageReference::parse(&"x".repeat(255)).expect("valid reference");
        let name = generate_pod_name(&long, Some("req-1"));
        assert_eq!(name.len(), 63);
        assert_label(&name, long.as_str());
    }

    #[test]
    fn seeded_names_repeat_and_unseeded_names_differ() {
        let image = ImageReference::parse("nginx").expect("valid reference");
        let first = generate_pod_name(&image, Some("7f1c2a9e-request"));
        assert_eq!(first, generate_pod_name(&image, Some("7f1c2a9e-request")));
        assert_ne!(first, generate_pod_name(&image, Some("another-request")));
        let random: std::collections::BTreeSet<String> =
            (0..50).map(|_| generate_pod_name(&image, None)).collect();
        assert!(random.len() >= 49, "random names repeat: {random:?}");
    }

    #[test]
    fn any_component_gives_a_dns1123_label() {
        let weird = [
            "",
            "-",
            "---",
            "___",
            "...",
            "UPPER_case.Name",
            "a_b.c-d",
            "sha256:0123abcd",
            "nginx@sha256:abc",
            "-x-",
            "é",
            "ünïcödé-app",
            "\t\n",
            "a b c",
            "9",
            "x--y__z..w",
        ];
        let generated = (0..200).map(|n| {
            // Mixtures of letters, digits and separators of every length up to 300.
            (0..(n * 3 % 301))
                .map(|i| char::from(b"aZ9-_.:@/ "[(i * 7 + n) % 10]))
                .collect::<String>()
        });
        for (n, component) in weird
            .iter()
            .map(|s| s.to_string())
            .chain(generated)
            .enumerate()
        {
            let name = name_with_suffix(&component, (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_label(&name, &component);
        }
        assert_eq!(pod_name_base("___"), "pod");
        assert_eq!(pod_name_base("UPPER_case.Name"), "upper-case-name");
        assert_eq!(
            pod_name_base(&format!("{}_{}", "a".repeat(56), "b".repeat(10))),
            "a".repeat(56)
        );
    }
}
