//! Unpadded base64url (RFC 4648 §5), as JWS compact serialisation uses it.
//!
//! The verifier reads a token's header itself, before any library sees it, so that it can
//! name a refused `alg` (even one jsonwebtoken has no variant for, such as `none`).
//! The `base64` crate is only a transitive dependency, and these few lines are cheaper than
//! another direct one.

/// Decodes unpadded base64url. `None` when the input has padding, a character outside the
/// alphabet, an impossible length, or non-zero bits after the last byte (non-canonical).
pub(super) fn decode(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for &byte in bytes {
        buffer = (buffer << 6) | u32::from(sextet(byte)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation is the point: take the next whole byte off the top.
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, or two different strings would decode to the same bytes.
    (buffer == 0).then_some(out)
}

fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Encodes as unpadded base64url; tests use it to build tokens no library would sign.
#[cfg(test)]
pub(super) fn encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn round_trips_every_length_and_byte() {
        let all: Vec<u8> = (0..=255).collect();
        for len in 0..all.len() {
            let encoded = encode(&all[..len]);
            assert!(!encoded.contains('='), "{encoded}");
            assert_eq!(
                decode(&encoded).as_deref(),
                Some(&all[..len]),
                "length {len}"
            );
        }
    }

    #[test]
    fn known_vectors() {
        // RFC 4648 §10, without padding, and the URL-safe characters.
        let table: &[(&str, &[u8])] = &[
            ("", b""),
            ("Zg", b"f"),
            ("Zm8", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg", b"foob"),
            ("Zm9vYmE", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
            ("-_8", &[0xfb, 0xff]),
        ];
        for (text, bytes) in table {
            assert_eq!(decode(text).as_deref(), Some(*bytes), "{text}");
            assert_eq!(encode(bytes), *text);
        }
    }

    #[test]
    fn rejects_what_is_not_canonical_unpadded_base64url() {
        for bad in [
            "Zg==", "Zm9v+", "Zm9v/", "Z", "Zm9vY", "Zh", "a b", "Zm9v\n",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
