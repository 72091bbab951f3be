//! Signed, server-relative URLs of the local store's blobs:
//! `/api/v1/blobs/{digest}?method=PUT&size=N&expires=MS&sig=HEX`, and for
//! one part of a large upload `&upload=ID&part=N` too (`size` is then the
//! part's). The signature (HMAC-SHA256) binds the method, the blob, the
//! size, the expiry and the part, under a key every replica derives from
//! the sealed token-signing key: any replica serves a URL another issued,
//! and nobody without the database and its master key can make one.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use xene_core::artifact::Digest;

/// The path under which blobs are served.
pub const BLOBS_PATH: &str = "/api/v1/blobs";

/// What a blob URL lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobMethod {
    Get,
    Put,
}

impl BlobMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "GET" => Some(Self::Get),
            "PUT" => Some(Self::Put),
            _ => None,
        }
    }
}

/// A URL's query, as it arrives (every field checked by `verify`).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct BlobQuery {
    pub method: Option<String>,
    pub size: Option<u64>,
    pub expires: Option<i64>,
    pub upload: Option<String>,
    pub part: Option<u64>,
    pub sig: Option<String>,
}

/// One part of a multipart upload: its upload's id and its number (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub upload: String,
    pub number: u64,
}

/// An upload id as the local store makes them: 32 lowercase hex digits
/// (so it is safe in a file name).
pub fn is_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a verified URL grants: one method on one blob of one size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub method: BlobMethod,
    pub digest: Digest,
    /// The blob's size, or the part's.
    pub size: u64,
    pub part: Option<Part>,
}

/// Why a URL is refused; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("this blob URL is malformed: {0}")]
    Malformed(String),
    #[error("this blob URL expired; the agent asks the server for a new one")]
    Expired,
    #[error(
        "this blob URL's signature does not match: it was altered, or signed by another server"
    )]
    BadSignature,
    #[error("this blob URL is for {signed}, not {asked}")]
    WrongMethod { signed: &'static str, asked: String },
}

pub struct LocalUrls {
    key: [u8; 32],
}

impl std::fmt::Debug for LocalUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalUrls(..)")
    }
}

impl LocalUrls {
    /// Keys URLs with a key derived from `secret` (the token-signing key),
    /// so a blob URL's signature can never pass for a token's.
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"xene artifact blob URLs v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// A URL granting `method` on the blob until `expires_ms` (UTC ms).
    pub fn sign(&self, method: BlobMethod, digest: &Digest, size: u64, expires_ms: i64) -> String {
        let sig = hex::encode(
            self.mac(method, digest, size, expires_ms, None)
                .finalize()
                .into_bytes(),
        );
        format!(
            "{BLOBS_PATH}/{digest}?method={}&size={size}&expires={expires_ms}&sig={sig}",
            method.as_str()
        )
    }

    /// A URL granting the PUT of `part` (`size` bytes) of a multipart
    /// upload of the blob.
    pub fn sign_part(&self, digest: &Digest, size: u64, expires_ms: i64, part: &Part) -> String {
        let sig = hex::encode(
            self.mac(BlobMethod::Put, digest, size, expires_ms, Some(part))
                .finalize()
                .into_bytes(),
        );
        format!(
            "{BLOBS_PATH}/{digest}?method=PUT&size={size}&upload={}&part={}&expires={expires_ms}&sig={sig}",
            part.upload, part.number
        )
    }

    /// Checks a URL's parts against its signature and `now_ms`. `asked` is
    /// the request's method (HEAD is a GET without the body).
    pub fn verify(
        &self,
        asked: &str,
        digest: &str,
        query: &BlobQuery,
        now_ms: i64,
    ) -> Result<Grant, UrlError> {
        let malformed = |what: &str| UrlError::Malformed(what.to_string());
        let digest = Digest::parse(digest).map_err(UrlError::Malformed)?;
        let method = query
            .method
            .as_deref()
            .and_then(BlobMethod::parse)
            .ok_or_else(|| malformed("`method` is GET or PUT"))?;
        let size = query.size.ok_or_else(|| malformed("`size` is missing"))?;
        let expires = query
            .expires
            .ok_or_else(|| malformed("`expires` is missing"))?;
        let sig = query
            .sig
            .as_deref()
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| malformed("`sig` is hex"))?;
        let part = match (&query.upload, query.part) {
            (None, None) => None,
            (Some(upload), Some(number)) if is_upload_id(upload) && number >= 1 => Some(Part {
                upload: upload.clone(),
                number,
            }),
            _ => return Err(malformed("`upload` and `part` go together")),
        };
        // The signature first: what an altered URL says is not to be trusted.
        self.mac(method, &digest, size, expires, part.as_ref())
            .verify_slice(&sig)
            .map_err(|_| UrlError::BadSignature)?;
        if expires <= now_ms {
            return Err(UrlError::Expired);
        }
        let allowed = match method {
            BlobMethod::Get => asked == "GET" || asked == "HEAD",
            BlobMethod::Put => asked == "PUT",
        };
        if !allowed {
            return Err(UrlError::WrongMethod {
                signed: method.as_str(),
                asked: asked.chars().take(16).collect(),
            });
        }
        Ok(Grant {
            method,
            digest,
            size,
            part,
        })
    }

    fn mac(
        &self,
        method: BlobMethod,
        digest: &Digest,
        size: u64,
        expires_ms: i64,
        part: Option<&Part>,
    ) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        let (upload, number) = part.map_or(("", 0), |p| (p.upload.as_str(), p.number));
        mac.update(
            format!(
                "{}\n{digest}\n{size}\n{expires_ms}\n{upload}\n{number}",
                method.as_str()
            )
            .as_bytes(),
        );
        mac
    }
}

/// A server-relative URL's path and query, parsed as the route would.
pub fn parse_relative(url: &str) -> Result<(String, BlobQuery), UrlError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let digest = path
        .strip_prefix(BLOBS_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|d| !d.contains('/'))
        .ok_or_else(|| UrlError::Malformed(format!("not a blob URL: {}", clip(path))))?;
    let uri: axum::http::Uri = format!("/?{query}")
        .parse()
        .map_err(|_| UrlError::Malformed("bad query".into()))?;
    let axum::extract::Query(query) = axum::extract::Query::<BlobQuery>::try_from_uri(&uri)
        .map_err(|e| UrlError::Malformed(format!("bad query: {e}")))?;
    Ok((digest.to_string(), query))
}

fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::from_sha256(&[7; 32])
    }

    #[test]
    fn a_signed_url_grants_its_method_blob_and_size_until_it_expires() {
        let urls = LocalUrls::new(b"secret");
        let url = urls.sign(BlobMethod::Put, &digest(), 42, 2_000);
        let (d, q) = parse_relative(&url).unwrap();
        let grant = urls.verify("PUT", &d, &q, 1_000).unwrap();
        assert_eq!(grant.size, 42);
        assert_eq!(grant.digest, digest());
        assert_eq!(urls.verify("PUT", &d, &q, 2_000), Err(UrlError::Expired));
        assert!(matches!(
            urls.verify("GET", &d, &q, 1_000),
            Err(UrlError::WrongMethod { .. })
        ));
        // Any field changed breaks the signature, and so does another key.
        let tampered = url.replace("size=42", "size=43");
        let (d, q) = parse_relative(&tampered).unwrap();
        assert_eq!(
            urls.verify("PUT", &d, &q, 1_000),
            Err(UrlError::BadSignature)
        );
        let (d, q) = parse_relative(&url).unwrap();
        let other = LocalUrls::new(b"another");
        assert_eq!(
            other.verify("PUT", &d, &q, 1_000),
            Err(UrlError::BadSignature)
        );
        let part = Part {
            upload: "0123456789abcdef0123456789abcdef".into(),
            number: 2,
        };
        let url = urls.sign_part(&digest(), 42, 2_000, &part);
        let (d, q) = parse_relative(&url).unwrap();
        assert_eq!(urls.verify("PUT", &d, &q, 1_000).unwrap().part, Some(part));
        let (d, q) = parse_relative(&url.replace("part=2", "part=3")).unwrap();
        assert_eq!(
            urls.verify("PUT", &d, &q, 1_000),
            Err(UrlError::BadSignature)
        );
        let get = urls.sign(BlobMethod::Get, &digest(), 42, 2_000);
        let (d, q) = parse_relative(&get).unwrap();
        assert!(urls.verify("HEAD", &d, &q, 1_000).is_ok());
    }
}
