//! Secrets encrypted at rest, decrypted on this machine with the operator's
//! EncryptionConfiguration: kube-apiserver's `aescbc` (AES-CBC with PKCS#7 padding, the
//! 16-byte IV first), `aesgcm` (AES-GCM, the 12-byte nonce first, the etcd key as the
//! authenticated data, so a value copied under another key does not open) and `secretbox`
//! (XSalsa20-Poly1305, the 24-byte nonce first) providers. KMS values are not decrypted here:
//! their keys never leave their service.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};

/// The providers whose values are decrypted here.
const LOCAL: &[&str] = &["aescbc", "aesgcm", "secretbox"];

/// The keys of an EncryptionConfiguration that can be used here.
#[derive(Default)]
pub struct Keys {
    /// (provider, key name, key bytes).
    keys: Vec<(String, String, Vec<u8>)>,
}

impl Keys {
    pub fn of_config(config: &str) -> Result<Keys, String> {
        let mut keys = Vec::new();
        for (provider, name, secret) in super::key_secrets(config)? {
            if !LOCAL.contains(&provider.as_str()) {
                continue;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(secret.trim())
                .map_err(|e| format!("{provider} key {name:?}: the secret is not base64 ({e})"))?;
            let ok = match provider.as_str() {
                "aescbc" | "aesgcm" => matches!(bytes.len(), 16 | 24 | 32),
                _ => bytes.len() == 32,
            };
            if !ok {
                return Err(format!(
                    "{provider} key {name:?} is {} bytes, which {provider} does not use",
                    bytes.len()
                ));
            }
            keys.push((provider, name, bytes));
        }
        Ok(Keys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The stored bytes under the envelope of the value stored at etcd key `at`, or why not:
    /// no such key here, a provider this cannot decrypt, or a key that does not open the
    /// value (the wrong key of that name).
    pub fn decrypt(
        &self,
        value: &[u8],
        provider: &str,
        name: &str,
        at: &[u8],
    ) -> Result<Vec<u8>, String> {
        let Some((_, _, key)) = self
            .keys
            .iter()
            .find(|(p, n, _)| p == provider && n == name)
        else {
            return Err(if LOCAL.contains(&provider) {
                format!(
                    "encrypted with {provider} key {name:?}, which the encryption config does not hold"
                )
            } else {
                format!("encrypted with {provider} ({name}), which runbook does not decrypt")
            });
        };
        let prefix = format!("k8s:enc:{provider}:v1:{name}:");
        let data = &value[prefix.len().min(value.len())..];
        let wrong = || {
            format!(
                "{provider} key {name:?} does not decrypt it (a different key of the same name?)"
            )
        };
        match provider {
            "aescbc" => {
                if data.len() < 32 || !data.len().is_multiple_of(16) {
                    return Err(wrong());
                }
                let (iv, ct) = data.split_at(16);
                let plain = match key.len() {
                    16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                        .map_err(|_| wrong())?
                        .decrypt_padded_vec_mut::<Pkcs7>(ct),
                    24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
                        .map_err(|_| wrong())?
                        .decrypt_padded_vec_mut::<Pkcs7>(ct),
                    _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                        .map_err(|_| wrong())?
                        .decrypt_padded_vec_mut::<Pkcs7>(ct),
                };
                plain.map_err(|_| wrong())
            }
            "aesgcm" => {
                use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
                if data.len() < 12 + 16 {
                    return Err(wrong());
                }
                let (nonce, ct) = data.split_at(12);
                let payload = Payload { msg: ct, aad: at };
                let nonce = aes_gcm::Nonce::from_slice(nonce);
                match key.len() {
                    16 => aes_gcm::Aes128Gcm::new_from_slice(key)
                        .map_err(|_| wrong())?
                        .decrypt(nonce, payload),
                    24 => {
                        aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(
                            key,
                        )
                        .map_err(|_| wrong())?
                        .decrypt(nonce, payload)
                    }
                    _ => aes_gcm::Aes256Gcm::new_from_slice(key)
                        .map_err(|_| wrong())?
                        .decrypt(nonce, payload),
                }
                .map_err(|_| wrong())
            }
            _ => {
                if data.len() < 24 {
                    return Err(wrong());
                }
                let (nonce, ct) = data.split_at(24);
                crypto_secretbox::XSalsa20Poly1305::new_from_slice(key)
                    .map_err(|_| wrong())?
                    .decrypt(nonce.into(), ct)
                    .map_err(|_| wrong())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockEncryptMut;

    const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - {name: gcm1, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n  - aescbc:\n      keys:\n      - {name: key1, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n  - secretbox:\n      keys:\n      - {name: box1, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n  - identity: {}\n";

    #[test]
    fn aescbc_aesgcm_and_secretbox_values_open_with_their_named_key_only() {
        let keys = Keys::of_config(CONFIG).unwrap();
        let key = b"0123456789abcdef0123456789abcdef";
        let iv = [7u8; 16];
        let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .unwrap()
            .encrypt_padded_vec_mut::<Pkcs7>(b"k8s\0object");
        let value = [b"k8s:enc:aescbc:v1:key1:".to_vec(), iv.to_vec(), ct].concat();
        assert_eq!(
            keys.decrypt(&value, "aescbc", "key1", b"/registry/secrets/a/b")
                .unwrap(),
            b"k8s\0object"
        );
        let missing = keys
            .decrypt(&value, "aescbc", "key0", b"/registry/secrets/a/b")
            .unwrap_err();
        assert!(missing.contains("does not hold"), "{missing}");

        let nonce = [9u8; 24];
        let sealed = crypto_secretbox::XSalsa20Poly1305::new_from_slice(key)
            .unwrap()
            .encrypt((&nonce).into(), &b"k8s\0boxed"[..])
            .unwrap();
        let mut value = [
            b"k8s:enc:secretbox:v1:box1:".to_vec(),
            nonce.to_vec(),
            sealed,
        ]
        .concat();
        assert_eq!(
            keys.decrypt(&value, "secretbox", "box1", b"/registry/secrets/a/b")
                .unwrap(),
            b"k8s\0boxed"
        );
        *value.last_mut().unwrap() ^= 1;
        assert!(
            keys.decrypt(&value, "secretbox", "box1", b"/registry/secrets/a/b")
                .unwrap_err()
                .contains("does not decrypt")
        );
        assert!(
            keys.decrypt(
                b"k8s:enc:kms:v2:vault:x",
                "kms",
                "vault",
                b"/registry/secrets/a/b"
            )
            .unwrap_err()
            .contains("does not decrypt")
        );
    }
}
