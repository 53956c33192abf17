//! The official platform's webhook signatures (Ed25519). The key pair is derived from the bot
//! secret: the secret repeated until it is 32 bytes long, cut to 32, is the private seed.
//!
//! - Callback URL validation (op 13): the platform sends `{plain_token, event_ts}`; the answer
//!   is `{plain_token, signature}` with the hex signature of `event_ts ‖ plain_token`.
//! - Every request: `X-Signature-Ed25519` is the hex signature of
//!   `X-Signature-Timestamp ‖ body`; a request whose signature does not verify is refused.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};

/// The bot's webhook key pair, derived from its secret.
pub struct WebhookKey(SigningKey);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(<redacted>)")
    }
}

impl WebhookKey {
    /// The key of the bot whose secret is `secret` (must not be empty).
    pub fn from_secret(secret: &str) -> Option<WebhookKey> {
        let bytes = secret.as_bytes();
        if bytes.is_empty() {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = bytes[i % bytes.len()];
        }
        Some(WebhookKey(SigningKey::from_bytes(&seed)))
    }

    /// The hex signature of `parts` concatenated.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.0.sign(&parts.concat()).to_bytes())
    }

    /// The answer to a callback URL validation (op 13): the signature of `event_ts ‖ plain_token`.
    pub fn validation_signature(&self, event_ts: &str, plain_token: &str) -> String {
        self.sign(&[event_ts.as_bytes(), plain_token.as_bytes()])
    }

    /// Whether `signature_hex` signs `timestamp ‖ body` with this bot's key.
    pub fn verify(&self, timestamp: &str, body: &[u8], signature_hex: &str) -> bool {
        let Ok(bytes) = hex::decode(signature_hex.trim()) else { return false };
        let Ok(signature) = Signature::from_slice(&bytes) else { return false };
        self.0.verifying_key().verify(&[timestamp.as_bytes(), body].concat(), &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_validation_vector() {
        // bot.q.qq.com/wiki/develop/api-v2/dev-prepare/interface-framework/sign.html
        let key = WebhookKey::from_secret("DG5g3B4j9X2KOErG").unwrap();
        let signature = key.validation_signature("1725442341", "Arq0D5A61EgUu4OxUvOp");
        assert_eq!(
            signature,
            "87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d01bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706"
        );
    }

    #[test]
    fn requests_verify_only_with_their_own_timestamp_body_and_key() {
        let key = WebhookKey::from_secret("s3cret").unwrap();
        let body = br#"{"op":0,"t":"C2C_MESSAGE_CREATE"}"#;
        let sig = key.sign(&[b"1725442341", body]);
        assert!(key.verify("1725442341", body, &sig));
        assert!(!key.verify("1725442342", body, &sig), "another timestamp (a replay)");
        assert!(!key.verify("1725442341", b"{}", &sig), "another body");
        assert!(!key.verify("1725442341", body, "00"), "garbage");
        assert!(!WebhookKey::from_secret("other").unwrap().verify("1725442341", body, &sig), "another bot");
        assert!(WebhookKey::from_secret("").is_none());
    }
}
