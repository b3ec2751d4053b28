//! Client certificates: the caller named by a certificate's subject.

use std::time::{Duration, UNIX_EPOCH};

use x509_parser::{certificate::X509Certificate, x509::AttributeTypeAndValue};

use super::AuthError;
use crate::domain::{Caller, Credential};

/// The caller named by a DER client certificate, the same way Kubernetes reads client
/// certificates: subject = the subject's common name (CN), groups = its organisations (O),
/// `expires_at` = `notAfter`, credential = [`Credential::ClientCertificate`].
///
/// The certificate must already have been verified by the TLS handshake against the client
/// CA; this only reads it.
///
/// # Errors
///
/// [`AuthError::Certificate`] when the DER does not parse, the subject has no common name or
/// more than one, or a name is not a string.
pub fn caller_from_certificate(der: &[u8]) -> Result<Caller, AuthError> {
    let invalid = |why: &str| AuthError::Certificate(why.to_owned());
    let (rest, certificate) =
        x509_parser::parse_x509_certificate(der).map_err(|_| invalid("not a der certificate"))?;
    if !rest.is_empty() {
        return Err(invalid("trailing bytes after the certificate"));
    }
    let subject = common_name(&certificate)?;
    let groups = certificate
        .subject()
        .iter_organization()
        .map(|organisation| attribute_text(organisation, "organisation"))
        .filter(|group| group.as_ref().map_or(true, |group| !group.is_empty()))
        .collect::<Result<Vec<_>, _>>()?;
    let not_after = certificate.validity().not_after.timestamp();
    let expires_at = u64::try_from(not_after)
        .ok()
        .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)))
        // A certificate that expired before 1970 would have failed the handshake; refusing it
        // is simpler than representing it.
        .ok_or_else(|| invalid("notAfter is before 1970"))?;
    Ok(Caller {
        subject,
        groups,
        expires_at: Some(expires_at),
        credential: Credential::ClientCertificate,
    })
}

fn common_name(certificate: &X509Certificate<'_>) -> Result<String, AuthError> {
    let mut names = certificate.subject().iter_common_name();
    match (names.next(), names.next()) {
        (Some(name), None) => {
            let name = attribute_text(name, "common name")?;
            if name.is_empty() {
                return Err(AuthError::Certificate(
                    "subject common name is empty".into(),
                ));
            }
            Ok(name)
        }
        (None, _) => Err(AuthError::Certificate("subject has no common name".into())),
        // Which one would be "the" name is a matter of convention (Go takes the last); refusing
        // leaves no room for a CA-signed surprise.
        (Some(_), Some(_)) => Err(AuthError::Certificate(
            "subject has more than one common name".into(),
        )),
    }
}

fn attribute_text(attribute: &AttributeTypeAndValue<'_>, what: &str) -> Result<String, AuthError> {
    attribute
        .as_str()
        .map(str::to_owned)
        .map_err(|_| AuthError::Certificate(format!("subject {what} is not a readable string")))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::caller_from_certificate;
    use crate::auth::AuthError;
    use crate::domain::{Caller, Credential};

    // rcgen keeps one value per attribute type; the same OID as a custom type adds a second
    // attribute, as in Kubernetes client certificates with several organisations.
    fn second_organisation() -> DnType {
        DnType::CustomDnType(vec![2, 5, 4, 10])
    }

    fn second_common_name() -> DnType {
        DnType::CustomDnType(vec![2, 5, 4, 3])
    }

    fn certificate(names: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::new()).expect("no subject alt names");
        // A fresh name: the default one carries a common name of its own.
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.not_after = rcgen::date_time_ymd(2031, 6, 30);
        let key = KeyPair::generate().expect("key pair");
        params
            .self_signed(&key)
            .expect("self-signed certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn reads_common_name_organisations_and_not_after() {
        let der = certificate(&[
            (DnType::CommonName, "alice"),
            (DnType::OrganizationName, "team-a"),
            (second_organisation(), "deployers"),
        ]);
        let caller = caller_from_certificate(&der).expect("caller");
        // 2031-06-30T00:00:00Z
        let not_after = UNIX_EPOCH + Duration::from_secs(1_940_544_000);
        assert_eq!(
            caller,
            Caller {
                subject: "alice".into(),
                groups: vec!["team-a".into(), "deployers".into()],
                expires_at: Some(not_after),
                credential: Credential::ClientCertificate,
            }
        );
    }

    #[test]
    fn no_organisation_means_no_groups() {
        let der = certificate(&[(DnType::CommonName, "system:node:worker-1")]);
        let caller = caller_from_certificate(&der).expect("caller");
        assert_eq!(caller.subject, "system:node:worker-1");
        assert!(caller.groups.is_empty());
    }

    #[test]
    fn refuses_certificates_that_name_no_single_caller() {
        let table = [
            (
                "no common name",
                certificate(&[(DnType::OrganizationName, "team-a")]),
            ),
            (
                "empty common name",
                certificate(&[(DnType::CommonName, "")]),
            ),
            (
                "two common names",
                certificate(&[(DnType::CommonName, "alice"), (second_common_name(), "bob")]),
            ),
            ("not der", b"not a certificate".to_vec()),
        ];
        for (name, der) in table {
            let err = caller_from_certificate(&der).err();
            assert!(
                matches!(err, Some(AuthError::Certificate(_))),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_trailing_bytes() {
        let mut der = certificate(&[(DnType::CommonName, "alice")]);
        der.push(0);
        let err = caller_from_certificate(&der).err();
        assert!(matches!(err, Some(AuthError::Certificate(_))), "{err:?}");
    }
}
