//! What the host reads from a certificate itself, beyond what rustls
//! checks: validity dates (an expired certificate of the node's own stops
//! it at start) and subject alternative names (whether clients will accept
//! the name they reach the node at; which node a peer certificate is for).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// A certificate of the node's own that must not be presented, found at
/// start.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(
        "the certificate {} ({flag}) expired: it was valid from {} to {}, and it is now {}. \
         Renew it (for a test setup: `tsohost certs init DIR`) and start the node again",
        path.display(), date(not_before), date(not_after), date(now)
    )]
    Expired {
        path: PathBuf,
        /// The flag that named the file.
        flag: &'static str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    },
    #[error(
        "the certificate {} ({flag}) is not valid yet: it is valid from {} to {}, and it is \
         now {}. Check this machine's clock, or use a certificate valid now (for a test setup: \
         `tsohost certs init DIR`)",
        path.display(), date(not_before), date(not_after), date(now)
    )]
    NotYetValid {
        path: PathBuf,
        flag: &'static str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    },
}

/// `2026-12-02 07:12:52 UTC`.
fn date(t: &OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// What the start-up checks read from the node's certificate: its validity
/// and its subject alternative names (what clients check the host against;
/// the common name is not looked at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl CertInfo {
    /// Parse a DER X.509 certificate (only what is needed: validity and the
    /// subjectAltName extension).
    pub fn parse(der: &[u8]) -> Result<CertInfo, yasna::ASN1Error> {
        use yasna::Tag;
        let read_time = |r: yasna::BERReader| -> yasna::ASN1Result<OffsetDateTime> {
            if r.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
                Ok(*r.read_utctime()?.datetime())
            } else {
                Ok(*r.read_generalized_time()?.datetime())
            }
        };
        yasna::parse_ber(der, |r| {
            r.read_sequence(|r| {
                let info = r.next().read_sequence(|r| {
                    r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                    r.next().read_der()?; // serialNumber
                    r.next().read_der()?; // signature
                    r.next().read_der()?; // issuer
                    let (not_before, not_after) = r
                        .next()
                        .read_sequence(|r| Ok((read_time(r.next())?, read_time(r.next())?)))?;
                    r.next().read_der()?; // subject
                    r.next().read_der()?; // subjectPublicKeyInfo
                    let mut info = CertInfo {
                        not_before,
                        not_after,
                        dns_names: Vec::new(),
                        ips: Vec::new(),
                    };
                    // issuerUniqueID [1], subjectUniqueID [2], extensions [3].
                    while let Some(field) = r.read_optional(|r| r.read_tagged_der())? {
                        if field.tag() == Tag::context(3) {
                            info.read_extensions(field.value())?;
                        }
                    }
                    Ok(info)
                })?;
                r.next().read_der()?; // signatureAlgorithm
                r.next().read_der()?; // signatureValue
                Ok(info)
            })
        })
    }

    fn read_extensions(&mut self, der: &[u8]) -> yasna::ASN1Result<()> {
        let san = yasna::models::ObjectIdentifier::from_slice(&[2, 5, 29, 17]);
        let mut names = Vec::new();
        yasna::parse_ber(der, |r| {
            r.read_sequence_of(|r| {
                r.read_sequence(|r| {
                    let id = r.next().read_oid()?;
                    r.read_optional(|r| r.read_bool())?;
                    let value = r.next().read_bytes()?;
                    if id == san {
                        names = value;
                    }
                    Ok(())
                })
            })
        })?;
        if names.is_empty() {
            return Ok(());
        }
        yasna::parse_ber(&names, |r| {
            r.read_sequence_of(|r| {
                let name = r.read_tagged_der()?;
                let (tag, value) = (name.tag(), name.value());
                if tag == yasna::Tag::context(2) {
                    self.dns_names
                        .push(String::from_utf8_lossy(value).into_owned());
                } else if tag == yasna::Tag::context(7) {
                    if let Ok(v4) = <[u8; 4]>::try_from(value) {
                        self.ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(value) {
                        self.ips.push(IpAddr::from(v6));
                    }
                }
                Ok(())
            })
        })
    }

    /// Whether a client reaching the node at `host` (a DNS name or an IP
    /// address, as in a URL) accepts this certificate's names: an IP must
    /// be among the IP addresses, a name among the DNS names, where
    /// `*.example.com` stands for one label.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ips.contains(&ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns_names.iter().any(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => name == host,
            }
        })
    }

    /// The names covered, for a log line: `localhost, 127.0.0.1`.
    pub fn names(&self) -> String {
        let names: Vec<String> = self
            .dns_names
            .iter()
            .cloned()
            .chain(self.ips.iter().map(IpAddr::to_string))
            .collect();
        if names.is_empty() {
            "no names at all (no subject alternative names; clients do not look at the common \
             name)"
                .to_string()
        } else {
            names.join(", ")
        }
    }
}

/// The host of a URL (`https://host:port/...`): a name, an IPv4 address or
/// a bracketed IPv6 address (brackets kept).
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

/// The check of a certificate of the node's own (the first of the PEM file
/// `path`, named by `flag`) that a TLS library does not make: refuse one
/// outside its validity at `now`. Returns what was read of it (`None`, with
/// a warning, when it could not be parsed for this: rustls accepted it, so
/// it is presented).
pub fn check_validity(
    path: &Path,
    flag: &'static str,
    now: OffsetDateTime,
) -> Result<Option<CertInfo>, CertError> {
    let Some(der) = tsohost_client::tls::read_certs(path)
        .ok()
        .and_then(|chain| chain.into_iter().next())
    else {
        return Ok(None);
    };
    let info = match CertInfo::parse(&der) {
        Ok(info) => info,
        Err(e) => {
            tracing::warn!(
                "cannot read the validity dates and names of {} ({flag}: {e}); not checking them",
                path.display()
            );
            return Ok(None);
        }
    };
    let (path, not_before, not_after) = (path.to_path_buf(), info.not_before, info.not_after);
    if now > info.not_after {
        return Err(CertError::Expired {
            path,
            flag,
            not_before,
            not_after,
            now,
        });
    }
    if now < info.not_before {
        return Err(CertError::NotYetValid {
            path,
            flag,
            not_before,
            not_after,
            now,
        });
    }
    Ok(Some(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_host_takes_the_host_of_a_url() {
        assert_eq!(
            url_host("https://tso.example.com:7373/x"),
            Some("tso.example.com")
        );
        assert_eq!(url_host("https://10.0.0.1"), Some("10.0.0.1"));
        assert_eq!(url_host("https://[::1]:7373"), Some("[::1]"));
        assert_eq!(url_host("https://"), None);
    }

    #[test]
    fn a_certificate_covers_its_names_its_ips_and_one_label_under_a_wildcard() {
        let info = CertInfo {
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            dns_names: vec!["localhost".into(), "*.Example.com".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        };
        for host in [
            "localhost",
            "LOCALHOST.",
            "tso.example.com",
            "127.0.0.1",
            "[::1]",
        ] {
            assert!(info.covers(host), "{host}");
        }
        for host in ["example.com", "a.b.example.com", "10.0.0.1", "other"] {
            assert!(!info.covers(host), "{host}");
        }
        assert_eq!(info.names(), "localhost, *.Example.com, 127.0.0.1, ::1");
    }
}
