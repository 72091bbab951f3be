//! Who gets in: the decision on a verified ID token's claims, kept pure so
//! every rule is tested without a provider.

/// The claims the decision reads, from a verified ID token.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// Google's hosted domain: present, and signed, only for Workspace accounts.
    pub hd: Option<String>,
}

/// Who may get in.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Lowercased, compared whole.
    pub allowed_domains: Vec<String>,
    /// Lowercased, compared whole.
    pub allowed_emails: Vec<String>,
    pub require_hd: bool,
}

/// Why someone was turned away. The code goes to the sign-in page, which
/// explains it; nothing the provider sent is echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoEmail,
    UnverifiedEmail,
    DomainNotAllowed,
    HostedDomainMissing,
    HostedDomainNotAllowed,
    Disabled,
    /// The flow itself failed: a bad state, a token that does not verify.
    Failed,
    NotConfigured,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::NoEmail => "no_email",
            Self::UnverifiedEmail => "unverified_email",
            Self::DomainNotAllowed => "domain_not_allowed",
            Self::HostedDomainMissing => "hd_missing",
            Self::HostedDomainNotAllowed => "hd_not_allowed",
            Self::Disabled => "disabled",
            Self::Failed => "failed",
            Self::NotConfigured => "not_configured",
        }
    }
}

impl Policy {
    /// Admits a verified email of an allowed domain (exactly) or an allowed
    /// single email; with `require_hd`, a domain admission also needs the
    /// signed `hd` claim to name an allowed domain, because anyone can make
    /// a consumer Google account for an address at any domain.
    pub fn admit(&self, claims: &Claims) -> Result<String, Refusal> {
        let email = claims
            .email
            .as_deref()
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .ok_or(Refusal::NoEmail)?;
        if claims.email_verified != Some(true) {
            return Err(Refusal::UnverifiedEmail);
        }
        if self.allowed_emails.contains(&email) {
            return Ok(email);
        }
        let domain = match email.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => domain,
            _ => return Err(Refusal::NoEmail),
        };
        if !self.allowed_domains.iter().any(|d| d == domain) {
            return Err(Refusal::DomainNotAllowed);
        }
        if self.require_hd {
            let hd = claims
                .hd
                .as_deref()
                .map(str::to_ascii_lowercase)
                .ok_or(Refusal::HostedDomainMissing)?;
            if !self.allowed_domains.contains(&hd) {
                return Err(Refusal::HostedDomainNotAllowed);
            }
        }
        Ok(email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(email: &str, verified: bool, hd: Option<&str>) -> Claims {
        Claims {
            email: Some(email.into()),
            email_verified: Some(verified),
            hd: hd.map(String::from),
        }
    }

    fn policy(require_hd: bool) -> Policy {
        Policy {
            allowed_domains: vec!["example.com".into(), "mail.com".into()],
            allowed_emails: vec!["guest@gmail.com".into()],
            require_hd,
        }
    }

    #[test]
    fn allowed_domain_gets_in() {
        let p = policy(true);
        assert_eq!(
            p.admit(&claims("Alice@Example.com", true, Some("example.com"))),
            Ok("alice@example.com".into())
        );
    }

    #[test]
    fn domains_match_exactly() {
        let p = policy(false);
        assert_eq!(
            p.admit(&claims("a@gmail.com", true, None)),
            Err(Refusal::DomainNotAllowed)
        );
        assert_eq!(
            p.admit(&claims("a@sub.example.com", true, None)),
            Err(Refusal::DomainNotAllowed)
        );
        assert_eq!(
            p.admit(&claims("a@example.com.evil.org", true, None)),
            Err(Refusal::DomainNotAllowed)
        );
    }

    #[test]
    fn unverified_or_missing_email_is_refused() {
        let p = policy(false);
        assert_eq!(
            p.admit(&claims("a@example.com", false, None)),
            Err(Refusal::UnverifiedEmail)
        );
        let mut c = claims("a@example.com", true, None);
        c.email_verified = None;
        assert_eq!(p.admit(&c), Err(Refusal::UnverifiedEmail));
        assert_eq!(p.admit(&Claims::default()), Err(Refusal::NoEmail));
        assert_eq!(
            p.admit(&claims("@example.com", true, None)),
            Err(Refusal::NoEmail)
        );
    }

    #[test]
    fn hosted_domain_is_required_and_checked() {
        let p = policy(true);
        assert_eq!(
            p.admit(&claims("a@example.com", true, None)),
            Err(Refusal::HostedDomainMissing)
        );
        assert_eq!(
            p.admit(&claims("a@example.com", true, Some("evil.org"))),
            Err(Refusal::HostedDomainNotAllowed)
        );
        assert!(
            policy(false)
                .admit(&claims("a@example.com", true, None))
                .is_ok()
        );
    }

    #[test]
    fn single_emails_bypass_the_domain_list() {
        let p = policy(true);
        assert_eq!(
            p.admit(&claims("guest@gmail.com", true, None)),
            Ok("guest@gmail.com".into())
        );
        assert_eq!(
            p.admit(&claims("guest@gmail.com", false, None)),
            Err(Refusal::UnverifiedEmail)
        );
    }

    #[test]
    fn nothing_allowed_admits_nobody() {
        let p = Policy::default();
        assert_eq!(
            p.admit(&claims("a@example.com", true, None)),
            Err(Refusal::DomainNotAllowed)
        );
    }
}
