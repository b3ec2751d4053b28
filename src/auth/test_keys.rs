//! Fixed keys for the authentication tests.
//!
//! Generated once with `openssl genpkey` (RSA 2048, EC P-256) and checked in, because RSA key
//! generation in an unoptimised test build takes seconds. They protect nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// RSA test key A (PKCS#8).
pub(super) const RSA_A_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7f+xnhRCNZOX0
VN5YFaupr7cPai2ehtei9+epQCvfozWe9QDB0f0ZYzfpAtokLWyD4KNVcx9NNjUb
emQaancJLw+y1HilHShrUJaeehHZmEPzGn4rHIeeltfM2pef1AQf44AOxSFJXQnG
PCQFdF6FiLdGP0dLsoWPAKcogX7UYiMy5QfmYKBhXLGGKdjlwAIO4mP0JSyWzawK
BcIb6uk0iKOzqNunMMQQ78dh+HXGHzN39ZRh9LE4dpUW7Bp/IjbYIWU2MGrZT3yy
wZMEsqfUL88Juivl0sEU8qknMVsYVAKhkeMhCogqys6LUXPebwAQw/e77IUKs5ah
wPZA2+xrAgMBAAECggEACLIopS5zM5OT5K6Q91Xd9cs7+r+KaRlI4/qKaHuc7UzU
/k/Pnq2eBvDmlWx38IiYyU8AVES4FW0nrmQRQ3ZfmfHwUPNwuvustblxmtz/ee+J
azt10YsLsSu+y3Xx5UxAergi5sx2vD/P5b1BUG1yus+57EygAl8/uX+mwQaseq4U
MFQP2lhBN32yViGNIkITwicm/WjbtuEjD4kR9QMtwVrvLRMLDB25uugy0U40hKfA
0rdBT0ivkJnmS0vhEndqqIRYJ7FlPby77Muep377HUDPUNI7lrVHH/K75HA2DHM9
DbQae2A1PPLiaiAfw/q9m7GosEt75UOp2uBwPmRFmQKBgQDbaI/b6kEE+KkxwnEZ
vqdBg0pITLPWDXmkH0wGX0bKZxU7RWEjrzTRD2WUDO4yURwVvIVG/xjsi2Cn+K5z
9JK0djolbopwXQfYdzuyD7NwlBcJHerZXz69fBYTIIRblzyX3xFoIPHS1WEJUbzT
MLB0KSxKBMSddz5lYZJuZkPVqQKBgQDaxQwtFm88bOCoatUQ3c2/ucx7yn4r+6zk
hzQR5DcRvrIRd+fG3OzYCwVm4I5M0Vdia3YHA27AprrN5YBIecI+dghgf3a78Axg
Qs36or2NuqZOcBSFMQ8/loPpRHIVjrYt/ywdN+ERi8/R25U59VWjPYVeofV68qBY
6sDnCq9V8wKBgQCgweH1zZNKIy9EqCTaKhi+JYX9p0V0pnbjy5KWcKSblB+4R8M+
tBbMvq08ZqT39PnQ60nzlOEcH5r4N3sKtr3uv1knJ/EDFwaykdoJQvvElpyyL1tt
XR3JE+vQo9iWix74X5aPZuQICBOLEnp5eoku8yPiL9AnV8E94tm5TfCR0QKBgBgb
msnlLQDlpqQoka44IxI7sVL674h9RYIxfAV0trTX5NuT8RCzC86K+F9r44KHly+b
U/hV4oCMXw2NeuOBt2wWqbmokjcHrvV0pyo1gNn7dZQzOa+rxlhlh8fO6RuDDIRp
GD1oCP9b/tzLa9hlNri0cNwK0PhpgE4MIJHVVZkNAoGAedw5EPQmWMa5GQfsu0iG
+WMLHDgU8amChBn8QQHDdR0Rr3pkqy2DKRQ1nWss07hJAw+sorhmvi3yG74kGoKh
+X5sFD5W/7wDO1ykPm8mOpM1MmvOQ2IE+grgIRj5iVIYcQDuiIFiT5gX2csVot8t
D7sRH+lEw1fVRU3T7DYIVS8=
-----END PRIVATE KEY-----
";

/// RSA key A's modulus, base64url.
pub(super) const RSA_A_N: &str = "u3_sZ4UQjWTl9FTeWBWrqa-3D2otnobXovfnqUAr36M1nvUAwdH9GWM36QLaJC1sg-CjVXMfTTY1G3pkGmp3CS8PstR4pR0oa1CWnnoR2ZhD8xp-KxyHnpbXzNqXn9QEH-OADsUhSV0JxjwkBXRehYi3Rj9HS7KFjwCnKIF-1GIjMuUH5mCgYVyxhinY5cACDuJj9CUsls2sCgXCG-rpNIijs6jbpzDEEO_HYfh1xh8zd_WUYfSxOHaVFuwafyI22CFlNjBq2U98ssGTBLKn1C_PCbor5dLBFPKpJzFbGFQCoZHjIQqIKsrOi1Fz3m8AEMP3u-yFCrOWocD2QNvsaw";

/// RSA test key B (PKCS#8), a different key for "same kid, other key" and rotation tests.
pub(super) const RSA_B_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCg9lHaD8H2ishy
cQgf0ca6KgyiSAKiPnaoUz6nzKAnkaa28B/Y+vgqO18eMt7nCYoHRep9unL2qkaj
EAS+u2oVuwDKwjanXVLtivvI70x+7DFomtIjMRr3td+tTrIxFJ4RkKSkR1mHMy/v
pAjF58CXnJzR74FM401Gj3eE73mAJ5lGXOjfw660+AgnEvCGZ2GzQOWsIjfiWdhI
6bEORoPlyKAQTbQsTQit2+XHOG51yTFUf8d2IL6EEhP/fTwym8bcpYcluwb1kpv2
Z9bZovT+N9ZRWaxmFs9kllYqRga5nwupeNRQbUhM9pio6Q1BxppmdQZ81kVo/zbU
R2n88efnAgMBAAECggEAKeNQM75MDLvbJCUUJyuxWrscpJK21MAKow1ezc4rk4CM
8SiWMSJGuL7Qpww4A8nwuKnSNzvxNQ3k6gR+J6CgH92VfC6EiJN5xEWZ9pWHw7P1
u7Imo2/hA7u55OEI8ErcQ9fvcKz8uHlyrRt0CQShkxL3oI6CiJ7Sel1Vjiu/48CA
QV0VgE16Uff/wu0bHq870w8921drohomWRvCuWMyvY08DgNqoh0jGiqO3EZRnxIV
8f1QZ2VrzA8FH3tU2w03Y56UJTxfKtAD6BZOgozlqogTrrlkifHbwgrchCJsn7Iy
A18HzVyxtjAOVLmPEuyuSB1D8rxSUhdFSCH/H9z40QKBgQDenMDcEC9CJV+1poZl
GRzI1Iku3t9iwdUizwV8zQ1q0AGsW3wSHJs8wzAILVc8pa7accJhu3aAYM65tHq0
zlX/IfWJJw6kEn0hrTxIMtnSBSzaXk6pyyWqKTPYiE6F45cWuHA5R+LhFD4JuinG
hCQM6yLaSiqhi3t3LWc5sCgADwKBgQC5Gn8kbmN/C/7JTzouwbgDqeFp8MVsE87W
etXfMHzeDa/fQjVd1OrzzzUqAX4oj4xTu3/GPAasSnUnbkMc6wxzCzfO/Edr1JTM
hodlY/QyoxkXMizPMKX6f86ldHi68GB2L7c/VGzRHugiEQRqpy7s719CunMBawXD
DZoOjxpCqQKBgBIHqCcquGknFcVko2X0zrwFWscNDhK1mEmlctBU201XY4tOLZJZ
9sjJFk7TPUmQMcVHiXLY+BQVwyiPUZDrVVPAsF5XZ3wqczATE9rVI4c7HBLjqINg
DMDnbWeQQqvdbxNMBOrew6VvOkcXaOLHORRCxyPe9ez3mxxf9QhbGCJJAoGBAJqm
k6F5hTFpcTb6Na9I9JhC/+0GV7ujlQVHXZb6qOjRYKZUZ8f8k0yeS1nMI3556JEw
r2GNVzntf5IxImtvylf4AGm0B2wFEUkMAOVqLGV+NQFXT27Pw2zWCW3dMN1m5gD4
fs6vl7bkbqe/tgPxqFgW6m0S3/FIXGkJ3TPaxeL5AoGAdu7YVhTrOlia9PiTWsy0
u2fqwJ9VY5uXdolZ9cU+VJeQmBn9aDG/VWwuRMBD1mYcqweQPJx+PcopN5/ifYQ3
9i8GbRP+UEuuQI4qK3WcjnJlyUDnrCDTvah683LpQE9nJHwJ7KaDl6CSLXdG+Rlj
4JRUC+m2LEOxz39pNiDGIpM=
-----END PRIVATE KEY-----
";

/// RSA key B's modulus, base64url.
pub(super) const RSA_B_N: &str = "oPZR2g_B9orIcnEIH9HGuioMokgCoj52qFM-p8ygJ5GmtvAf2Pr4KjtfHjLe5wmKB0Xqfbpy9qpGoxAEvrtqFbsAysI2p11S7Yr7yO9MfuwxaJrSIzEa97XfrU6yMRSeEZCkpEdZhzMv76QIxefAl5yc0e-BTONNRo93hO95gCeZRlzo38OutPgIJxLwhmdhs0DlrCI34lnYSOmxDkaD5cigEE20LE0IrdvlxzhudckxVH_HdiC-hBIT_308MpvG3KWHJbsG9ZKb9mfW2aL0_jfWUVmsZhbPZJZWKkYGuZ8LqXjUUG1ITPaYqOkNQcaaZnUGfNZFaP821Edp_PHn5w";

/// EC P-256 test key A (PKCS#8).
pub(super) const EC_A_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQga1MVbpWqKxVrwkki
yz20UFkkU+7er3oMFrvnhqFAxqChRANCAARUAG69YkepztzK42jit+He841edD+0
K8+ct+8unpWQr603Mqky6NW9SA/taavKsi3DecYJyATF6pgle5jYmX7W
-----END PRIVATE KEY-----
";

/// EC key A's public point, base64url.
pub(super) const EC_A_X: &str = "VABuvWJHqc7cyuNo4rfh3vONXnQ_tCvPnLfvLp6VkK8";
/// EC key A's public point, base64url.
pub(super) const EC_A_Y: &str = "rTcyqTLo1b1ID-1pq8qyLcN5xgnIBMXqmCV7mNiZftY";

/// The public JWK of RSA key A.
pub(super) fn rsa_a_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": RSA_A_N, "e": "AQAB"})
}

/// The public JWK of RSA key B (without `alg`, which is optional).
pub(super) fn rsa_b_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "n": RSA_B_N, "e": "AQAB"})
}

/// The public JWK of EC key A.
pub(super) fn ec_a_jwk(kid: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": kid, "x": EC_A_X, "y": EC_A_Y})
}

/// A JWKS document holding `keys`.
pub(super) fn jwks(keys: &[Value]) -> String {
    json!({"keys": keys}).to_string()
}

/// A file in the system temporary directory, removed when dropped.
pub(super) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Creates a uniquely named file holding `contents`.
    pub(super) fn new(name: &str, contents: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "k8s-deployer-auth-{}-{unique}-{name}",
            std::process::id()
        ));
        let file = Self { path };
        file.write(contents);
        file
    }

    /// Replaces the contents.
    pub(super) fn write(&self, contents: &str) {
        std::fs::write(&self.path, contents).expect("write temporary file");
    }

    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
