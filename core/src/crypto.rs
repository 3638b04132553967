//! Envelope encryption of personal data, and crypto-shredding.
//!
//! Three layers of AES-256-GCM keys: the master key (from the environment) wraps one key
//! per clinic, which wraps one data key per data subject (a patient). Sensitive fields and
//! files are encrypted under the subject's data key. Consequences:
//!
//! - destroying a subject's data key ([`Crypto::shred`]) makes every field and file
//!   encrypted for them unreadable, in the database, in storage and in every backup;
//! - rotating the master key re-wraps the clinics' keys ([`Crypto::rewrap_tenant_keys`]);
//!   no data is re-encrypted;
//! - exact look-ups on encrypted values use a blind index: an HMAC keyed per clinic.
//!
//! Every ciphertext is bound (as associated data) to its clinic, subject and field, so a
//! value copied to another row or column does not decrypt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use crate::db::{Conn, Db};
use crate::error::Error;
use crate::schema::{data_keys, tenant_keys};
use crate::sql::sql;
use crate::util::{random_bytes, sha256};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// A 256-bit key that never prints.
#[derive(Clone)]
struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    fn random() -> Self {
        Key(random_bytes())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }

    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let sealed = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        let corrupt = || Error::internal(anyhow::anyhow!("encrypted value does not authenticate"));
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(corrupt());
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().map_err(|_| corrupt())?;
        self.cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| corrupt())
    }

    fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<Key, Error> {
        let bytes = self.open(wrapped, aad)?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::internal(anyhow::anyhow!("wrapped key has the wrong length")))?;
        Ok(Key(key))
    }
}

fn parse_master(text: &str) -> anyhow::Result<([u8; 32], String)> {
    let bytes = STANDARD
        .decode(text.trim())
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim()))
        .map_err(|_| anyhow::anyhow!("a master key is base64 of 32 random bytes"))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a master key is base64 of exactly 32 bytes"))?;
    // The id names the key without revealing it: the first bytes of its hash.
    let id = sha256(&key)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((key, id))
}

/// A clinic's keys: one wraps data keys, one keys the blind index.
#[derive(Debug)]
struct TenantKey {
    wrapping: Key,
    index: Key,
}

/// The kernel's encryption service.
#[derive(Debug)]
pub struct Crypto {
    /// The key new tenant keys are wrapped with, and its id.
    current: (String, Key),
    /// Keys still accepted for unwrapping during a rotation.
    previous: Vec<(String, Key)>,
    /// Clinic keys are never destroyed while the clinic exists, so they may be cached.
    tenant_keys: Mutex<HashMap<Uuid, Arc<TenantKey>>>,
}

impl Crypto {
    /// `master` is base64 of 32 bytes; `previous` lists older master keys still in use.
    pub fn new(master: &SecretString, previous: &[SecretString]) -> anyhow::Result<Self> {
        let (key, id) = parse_master(master.expose_secret())?;
        let previous = previous
            .iter()
            .map(|p| parse_master(p.expose_secret()).map(|(k, id)| (id, Key(k))))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            current: (id, Key(key)),
            previous,
            tenant_keys: Mutex::default(),
        })
    }

    fn master(&self, id: &str) -> Result<&Key, Error> {
        if self.current.0 == id {
            return Ok(&self.current.1);
        }
        self.previous
            .iter()
            .find(|(pid, _)| pid == id)
            .map(|(_, k)| k)
            .ok_or_else(|| {
                Error::internal(anyhow::anyhow!(
                    "tenant key wrapped by unknown master key {id}"
                ))
            })
    }

    /// The clinic's key, created on first use. Runs in a tenant transaction of `tenant`.
    async fn tenant_key(&self, mut conn: &Conn, tenant: Uuid) -> Result<Arc<TenantKey>, Error> {
        if let Some(key) = self
            .tenant_keys
            .lock()
            .ok()
            .and_then(|m| m.get(&tenant).cloned())
        {
            return Ok(key);
        }
        let aad = format!("tenant-key:{tenant}");
        let fresh = Key::random();
        diesel::insert_into(tenant_keys::table)
            .values((
                tenant_keys::tenant_id.eq(tenant),
                tenant_keys::master_key_id.eq(&self.current.0),
                tenant_keys::wrapped_key.eq(self.current.1.seal(&fresh.0, aad.as_bytes())),
            ))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await?;
        let (master_id, wrapped): (String, Vec<u8>) = tenant_keys::table
            .find(tenant)
            .select((tenant_keys::master_key_id, tenant_keys::wrapped_key))
            .first(&mut conn)
            .await?;
        let wrapping = self
            .master(&master_id)?
            .unwrap_key(&wrapped, aad.as_bytes())?;
        let index = Key(hmac(&wrapping.0, b"harmony blind index v1")
            .try_into()
            .unwrap_or([0; 32]));
        let key = Arc::new(TenantKey { wrapping, index });
        if let Ok(mut cache) = self.tenant_keys.lock() {
            cache.insert(tenant, key.clone());
        }
        Ok(key)
    }

    /// A keyed hash of `value` for exact look-ups (e.g. a CPF), stable within a clinic.
    /// `kind` separates the indexes of different fields.
    pub async fn blind_index(
        &self,
        conn: &mut Conn,
        tenant: Uuid,
        kind: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let key = self.tenant_key(conn, tenant).await?;
        let mut input = kind.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(value);
        Ok(hmac(&key.index.0, &input)[..16].to_vec())
    }

    /// The cipher of one data subject, creating their data key on first use. `None` when
    /// the subject's key was destroyed: nothing can be encrypted or read for them any more.
    pub async fn subject(
        &self,
        conn: &mut Conn,
        tenant: Uuid,
        subject: Uuid,
    ) -> Result<Option<SubjectCipher>, Error> {
        let key = self.tenant_key(conn, tenant).await?;
        let aad = format!("data-key:{tenant}:{subject}");
        diesel::insert_into(data_keys::table)
            .values((
                data_keys::tenant_id.eq(tenant),
                data_keys::subject_id.eq(subject),
                data_keys::wrapped_key.eq(key.wrapping.seal(&Key::random().0, aad.as_bytes())),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let wrapped: Option<Vec<u8>> = data_keys::table
            .find((tenant, subject))
            .select(data_keys::wrapped_key)
            .first(conn)
            .await?;
        wrapped
            .map(|w| {
                let data = key.wrapping.unwrap_key(&w, aad.as_bytes())?;
                Ok(SubjectCipher {
                    tenant,
                    subject,
                    key: data,
                })
            })
            .transpose()
    }

    /// A key for a subject made up just now (a fresh id), not yet stored: its cipher, and
    /// the key wrapped for `data_key_insert(tenant, subject, wrapped)`, which the statement
    /// that creates the subject's row calls, so that row and key are written together.
    pub async fn fresh_subject(
        &self,
        conn: &Conn,
        tenant: Uuid,
        subject: Uuid,
    ) -> Result<(SubjectCipher, Vec<u8>), Error> {
        let key = self.tenant_key(conn, tenant).await?;
        let aad = format!("data-key:{tenant}:{subject}");
        let data = Key::random();
        let wrapped = key.wrapping.seal(&data.0, aad.as_bytes());
        let cipher = SubjectCipher {
            tenant,
            subject,
            key: data,
        };
        Ok((cipher, wrapped))
    }

    /// The cipher of a subject whose data is only read: creates no key. `None` when the
    /// subject has no key (nothing was ever encrypted for them) or it was destroyed. Takes a
    /// shared connection so that it can be pipelined with other queries.
    pub async fn open_subject(
        &self,
        mut conn: &Conn,
        tenant: Uuid,
        subject: Uuid,
    ) -> Result<Option<SubjectCipher>, Error> {
        let wrapped: Option<Option<Vec<u8>>> = data_keys::table
            .find((tenant, subject))
            .select(data_keys::wrapped_key)
            .first(&mut conn)
            .await
            .optional()?;
        self.open_wrapped(conn, tenant, subject, wrapped.flatten())
            .await
    }

    /// The cipher of a subject from its wrapped key, when the caller read the key from
    /// `data_keys` along with its own row (one query instead of two). `None` as for
    /// [`Crypto::open_subject`].
    pub async fn open_wrapped(
        &self,
        conn: &Conn,
        tenant: Uuid,
        subject: Uuid,
        wrapped: Option<Vec<u8>>,
    ) -> Result<Option<SubjectCipher>, Error> {
        let Some(wrapped) = wrapped else {
            return Ok(None);
        };
        let key = self.tenant_key(conn, tenant).await?;
        let aad = format!("data-key:{tenant}:{subject}");
        Some(wrapped)
            .map(|w| {
                let data = key.wrapping.unwrap_key(&w, aad.as_bytes())?;
                Ok(SubjectCipher {
                    tenant,
                    subject,
                    key: data,
                })
            })
            .transpose()
    }

    /// The ciphers of several subjects at once (for lists). Subjects without a key yet, or
    /// whose key was destroyed, are absent.
    pub async fn subjects(
        &self,
        conn: &mut Conn,
        tenant: Uuid,
        subjects: &[Uuid],
    ) -> Result<HashMap<Uuid, SubjectCipher>, Error> {
        let key = self.tenant_key(conn, tenant).await?;
        let rows: Vec<(Uuid, Option<Vec<u8>>)> = data_keys::table
            .filter(data_keys::subject_id.eq_any(subjects))
            .select((data_keys::subject_id, data_keys::wrapped_key))
            .load(conn)
            .await?;
        let mut ciphers = HashMap::new();
        for (subject, wrapped) in rows {
            if let Some(wrapped) = wrapped {
                let aad = format!("data-key:{tenant}:{subject}");
                let data = key.wrapping.unwrap_key(&wrapped, aad.as_bytes())?;
                ciphers.insert(
                    subject,
                    SubjectCipher {
                        tenant,
                        subject,
                        key: data,
                    },
                );
            }
        }
        Ok(ciphers)
    }

    /// Destroys the subject's data key: every value encrypted for them becomes unreadable.
    /// Irreversible.
    pub async fn shred(&self, conn: &mut Conn, tenant: Uuid, subject: Uuid) -> Result<(), Error> {
        sql(
            "INSERT INTO data_keys (tenant_id, subject_id, wrapped_key, shredded_at) \
             VALUES ($1, $2, NULL, now()) \
             ON CONFLICT (tenant_id, subject_id) DO UPDATE SET wrapped_key = NULL, shredded_at = now() \
             WHERE data_keys.shredded_at IS NULL",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant)
        .bind::<diesel::sql_types::Uuid, _>(subject)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Re-wraps every clinic key under the current master key, after which the previous
    /// master keys can be retired. Data is not touched.
    pub async fn rewrap_tenant_keys(&self, db: &Db) -> Result<usize, Error> {
        db.system("crypto.rewrap", |conn| {
            async move {
                let rows: Vec<(Uuid, String, Vec<u8>)> = tenant_keys::table
                    .filter(tenant_keys::master_key_id.ne(&self.current.0))
                    .select((
                        tenant_keys::tenant_id,
                        tenant_keys::master_key_id,
                        tenant_keys::wrapped_key,
                    ))
                    .for_update()
                    .load(conn)
                    .await?;
                for (tenant, master_id, wrapped) in &rows {
                    let aad = format!("tenant-key:{tenant}");
                    let key = self
                        .master(master_id)?
                        .unwrap_key(wrapped, aad.as_bytes())?;
                    diesel::update(tenant_keys::table.find(tenant))
                        .set((
                            tenant_keys::master_key_id.eq(&self.current.0),
                            tenant_keys::wrapped_key
                                .eq(self.current.1.seal(&key.0, aad.as_bytes())),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, Error>(rows.len())
            }
            .scope_boxed()
        })
        .await
    }
}

use scoped_futures::ScopedFutureExt as _;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Encrypts and decrypts one subject's fields and files.
#[derive(Debug, Clone)]
pub struct SubjectCipher {
    tenant: Uuid,
    subject: Uuid,
    key: Key,
}

impl SubjectCipher {
    fn aad(&self, field: &str) -> Vec<u8> {
        format!("{}:{}:{field}", self.tenant, self.subject).into_bytes()
    }

    /// Encrypts `plaintext` for `field` (e.g. `patient.cpf`).
    pub fn encrypt(&self, field: &str, plaintext: &[u8]) -> Vec<u8> {
        self.key.seal(plaintext, &self.aad(field))
    }

    /// Decrypts a value encrypted for the same subject and `field`.
    pub fn decrypt(&self, field: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        self.key.open(sealed, &self.aad(field))
    }

    /// Decrypts a value that was encrypted from UTF-8 text.
    pub fn decrypt_text(&self, field: &str, sealed: &[u8]) -> Result<String, Error> {
        String::from_utf8(self.decrypt(field, sealed)?)
            .map_err(|_| Error::internal(anyhow::anyhow!("decrypted text is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let key = Key::random();
        let sealed = key.seal(b"123.456.789-09", b"t:s:patient.cpf");
        assert_eq!(
            key.open(&sealed, b"t:s:patient.cpf").unwrap(),
            b"123.456.789-09"
        );
        assert!(
            key.open(&sealed, b"t:s:patient.notes").is_err(),
            "bound to its field"
        );
        assert!(
            Key::random().open(&sealed, b"t:s:patient.cpf").is_err(),
            "bound to its key"
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(&tampered, b"t:s:patient.cpf").is_err());
        assert_ne!(
            key.seal(b"x", b"a"),
            key.seal(b"x", b"a"),
            "a fresh nonce each time"
        );
    }

    #[test]
    fn master_keys_must_be_32_bytes_of_base64() {
        assert!(parse_master("c2hvcnQ").is_err());
        let (_, id) = parse_master(&STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(id.len(), 16);
    }
}
