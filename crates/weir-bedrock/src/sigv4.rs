//! SigV4 request signing (service `bedrock`) with `aws-sigv4`, and the percent-encoding of
//! model ids in request paths.
//!
//! Model ids carry `:` (`...-v1:0`) and ARNs carry `/`, so the id is one path segment
//! percent-encoded once in the URL (`%3A`, `%2F`), exactly as the AWS SDKs do. SigV4 for
//! every service but S3 then encodes the canonical URI *again* (`%253A`) and normalizes
//! it: aws-sigv4's `PercentEncodingMode::Double` and `UriPathNormalizationMode::Enabled`.
//! Signing the once-encoded path instead is the classic "signature does not match".

use std::time::SystemTime;

use aws_sigv4::http_request::{
    sign as sigv4_sign, PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody,
    SignableRequest, SignatureLocation, SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::credentials::AwsCredentials;

/// The SigV4 signing name of Bedrock's runtime API.
pub const SERVICE: &str = "bedrock";

/// A model id as one URL path segment: every byte but the unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded, as botocore encodes URI labels.
pub fn encode_model_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The signing settings for Bedrock: double-encoded, normalized canonical URI (non-S3
/// rules), signature in headers, no `x-amz-content-sha256` header (the payload hash is
/// part of the canonical request all the same), session token signed.
pub fn settings() -> SigningSettings {
    let mut s = SigningSettings::default();
    s.percent_encoding_mode = PercentEncodingMode::Double;
    s.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
    s.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    s.signature_location = SignatureLocation::Headers;
    s.session_token_mode = SessionTokenMode::Include;
    s
}

/// Signs a request: computes SigV4 over `method`, `url` (already percent-encoded), the
/// `headers` present (plus `host`, which signing derives from the URL the same way the
/// HTTP client writes it) and the SHA-256 of `body`, at `time`; then adds `x-amz-date`,
/// `x-amz-security-token` (temporary credentials) and `authorization` to `headers`, the
/// last two marked sensitive. Errors never contain credentials.
pub fn sign(
    method: &str,
    url: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    creds: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> Result<(), String> {
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.expose(),
        creds.secret_access_key.expose(),
        creds.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "weir",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings())
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let mut pairs = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let v = value
            .to_str()
            .map_err(|_| format!("header `{name}` is not visible ASCII and cannot be signed"))?;
        pairs.push((name.as_str(), v));
    }
    let signable = SignableRequest::new(method, url, pairs.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) = sigv4_sign(signable, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for h in new_headers {
        let name = HeaderName::from_bytes(h.name().as_bytes())
            .map_err(|_| format!("the signature header `{}` is not a valid name", h.name()))?;
        let mut value = HeaderValue::from_str(h.value()).map_err(|_| {
            format!(
                "the signature header `{}` is not a valid header value",
                h.name()
            )
        })?;
        if h.sensitive() || name == http::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        headers.insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_encoded_like_botocore_labels() {
        assert_eq!(
            encode_model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "us.anthropic.claude-sonnet-4-5-20250929-v1%3A0"
        );
        assert_eq!(
            encode_model_id(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2"
            ),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2"
        );
        assert_eq!(encode_model_id("a b~é"), "a%20b~%C3%A9");
    }
}
