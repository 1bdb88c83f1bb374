//! The client: materials from a keyring (through the cache), then streaming.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    sync::Arc,
};

use aws_lc_rs::{
    encoding::{AsBigEndian, EcPublicKeyCompressedBin},
    signature::{self, KeyPair},
};
use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    cache::{DataKeyCache, DecryptKey, EncryptKey, EncryptMaterials},
    context,
    frame::{Opener, Sealer},
    header::Header,
    stream, EncryptionContext, Error, Keyring, Result, Suite, PUBLIC_KEY_CONTEXT_KEY,
};

/// Default frame length: 256 KiB. Per-frame costs (frame header, AAD, one
/// `write`) are then well under 1% of the AES-GCM work, while the frame buffer
/// stays small enough to remain in the L2 cache between the read, the in-place
/// seal and the write — larger frames gain nothing and cost memory.
pub const DEFAULT_FRAME_LENGTH: u32 = 256 * 1024;

/// Which messages may be written and read. Only the committing suites are
/// implemented, so the policies that allow non-committing messages are absent:
/// this is the ESDK's `RequireEncryptRequireDecrypt`, its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CommitmentPolicy {
    /// Encrypt and decrypt only with key commitment.
    #[default]
    RequireEncryptRequireDecrypt,
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Suite for new messages (default `0x0478`).
    pub suite: Suite,
    /// Plaintext bytes per frame for new messages.
    pub frame_length: u32,
    /// Most encrypted data keys a message may carry, on either side (the
    /// ESDK's `max_encrypted_data_keys`). Bounds the header we will parse.
    pub max_encrypted_data_keys: usize,
    /// Largest frame length accepted when decrypting (bounds the frame buffer).
    pub max_frame_length: u32,
    /// Commitment policy.
    pub commitment_policy: CommitmentPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            suite: Suite::Aes256GcmHkdfSha512Commit,
            frame_length: DEFAULT_FRAME_LENGTH,
            max_encrypted_data_keys: 16,
            max_frame_length: 64 << 20,
            commitment_policy: CommitmentPolicy::RequireEncryptRequireDecrypt,
        }
    }
}

/// Per-message options for encryption.
#[derive(Debug, Clone, Default)]
pub struct EncryptOptions {
    /// Context keys that are authenticated but not stored in the message
    /// (the required-encryption-context CMM): the reader must supply them.
    pub required_context_keys: BTreeSet<String>,
    /// The plaintext length if known. The cache serves only messages of known
    /// length (it must count bytes against the per-key limit), as the ESDK does.
    pub plaintext_length: Option<u64>,
}

/// Per-message options for decryption.
#[derive(Debug, Clone, Default)]
pub struct DecryptOptions {
    /// Pairs the message's context must contain. Pairs absent from the stored
    /// context are supplied as the required context the encryptor left out.
    pub context: EncryptionContext,
    /// Keys the message's context must have (stored or supplied).
    pub required_keys: Vec<String>,
}

/// An envelope-encryption client over one keyring and an optional cache.
pub struct Client<K> {
    keyring: K,
    config: Config,
    cache: Option<Arc<DataKeyCache>>,
}

/// A message whose header is ready: stream the plaintext through it.
pub struct Encryption {
    sealer: Sealer,
    header: Vec<u8>,
}

/// A message whose header is authenticated: stream the rest through it.
pub struct Decryption {
    opener: Opener,
    context: EncryptionContext,
}

/// The header of a message read from a stream, not yet authenticated.
pub struct UnverifiedHeader {
    header: Header,
    body: Vec<u8>,
    tag: [u8; 16],
}

impl UnverifiedHeader {
    /// Reads the header from a blocking stream, leaving it at the first frame.
    pub fn read_sync<R: Read>(reader: &mut R, config: &Config) -> Result<UnverifiedHeader> {
        let (header, body, tag) = stream::read_header_sync(reader, config.max_encrypted_data_keys)?;
        Ok(UnverifiedHeader { header, body, tag })
    }

    /// Reads the header from an async stream, leaving it at the first frame.
    pub async fn read_async<R: AsyncRead + Unpin + ?Sized>(
        reader: &mut R,
        config: &Config,
    ) -> Result<UnverifiedHeader> {
        let (header, body, tag) =
            stream::read_header_async(reader, config.max_encrypted_data_keys).await?;
        Ok(UnverifiedHeader { header, body, tag })
    }

    /// The parsed header (its contents are not authentic until
    /// [`Client::begin_decrypt`] succeeds).
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl<K: Keyring> Client<K> {
    /// A client; refuses out-of-range configuration.
    pub fn new(keyring: K, config: Config) -> Result<Client<K>> {
        if config.frame_length == 0 || config.frame_length > config.max_frame_length {
            return Err(Error::Config(format!(
                "frame length {} must be between 1 and max_frame_length {}",
                config.frame_length, config.max_frame_length
            )));
        }
        if config.max_encrypted_data_keys == 0 {
            return Err(Error::Config(
                "max_encrypted_data_keys must be at least 1".into(),
            ));
        }
        Ok(Client {
            keyring,
            config,
            cache: None,
        })
    }

    /// Uses a (shared) data-key cache.
    pub fn with_cache(mut self, cache: Arc<DataKeyCache>) -> Client<K> {
        self.cache = Some(cache);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The keyring.
    pub fn keyring(&self) -> &K {
        &self.keyring
    }

    fn forget_on_revocation(&self, error: &Error) {
        // DESIGN invariant 2: cached keys of a key seen revoked go at once.
        if let (
            Some(cache),
            Error::Kms {
                key_id, failure, ..
            },
        ) = (&self.cache, error)
        {
            if failure.cause().revokes_key() {
                cache.drop_key(key_id);
            }
        }
    }

    async fn fresh_materials(&self, caller: &EncryptionContext) -> Result<EncryptMaterials> {
        let suite = self.config.suite;
        let mut context = caller.clone();
        let signing_key = if suite.is_signed() {
            let pair =
                signature::EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING)
                    .map_err(|_| Error::Crypto)?;
            let point: EcPublicKeyCompressedBin<'_> =
                pair.public_key().as_be_bytes().map_err(|_| Error::Crypto)?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(point.as_ref());
            context.insert(PUBLIC_KEY_CONTEXT_KEY.to_owned(), encoded);
            Some(pair)
        } else {
            None
        };
        let (data_key, edks) = self
            .keyring
            .generate(suite, &context)
            .await
            .inspect_err(|e| self.forget_on_revocation(e))?;
        if edks.is_empty() || edks.len() > self.config.max_encrypted_data_keys {
            return Err(Error::TooManyEncryptedDataKeys {
                count: edks.len(),
                max: self.config.max_encrypted_data_keys,
            });
        }
        Ok(EncryptMaterials {
            data_key,
            edks,
            context,
            signing_key,
        })
    }

    /// Gets a data key (from the cache or the keyring) and writes the header.
    pub async fn begin_encrypt(
        &self,
        context: &EncryptionContext,
        options: &EncryptOptions,
    ) -> Result<Encryption> {
        context::check_caller_context(context)?;
        if let Some(key) = options
            .required_context_keys
            .iter()
            .find(|k| !context.contains_key(*k))
        {
            return Err(Error::MissingRequiredContext(key.clone()));
        }
        context::serialize(context)?;
        let cache_slot = match (&self.cache, options.plaintext_length) {
            (Some(cache), Some(bytes)) => {
                let key = EncryptKey {
                    key_ids: self.keyring.key_ids(),
                    suite: self.config.suite.id(),
                    context: context::serialize(context)?,
                };
                Some((cache, key, bytes))
            }
            _ => None,
        };
        let cached = cache_slot
            .as_ref()
            .and_then(|(cache, key, bytes)| cache.take_encrypt(key, *bytes));
        let materials = match cached {
            Some(materials) => materials,
            None => {
                let materials = Arc::new(self.fresh_materials(context).await?);
                if let Some((cache, key, bytes)) = cache_slot {
                    cache.put_encrypt(key, materials.clone(), bytes);
                }
                materials
            }
        };
        let mut message_id = [0u8; 32];
        aws_lc_rs::rand::fill(&mut message_id).map_err(|_| Error::Crypto)?;
        let (stored, required): (EncryptionContext, EncryptionContext) = materials
            .context
            .clone()
            .into_iter()
            .partition(|(k, _)| !options.required_context_keys.contains(k));
        let mut header = Header {
            suite: self.config.suite,
            message_id,
            context: stored,
            encrypted_data_keys: materials.edks.clone(),
            frame_length: self.config.frame_length,
            commitment: [0; 32],
        };
        let (sealer, header) =
            Sealer::new(&mut header, &context::serialize(&required)?, materials)?;
        Ok(Encryption { sealer, header })
    }

    /// Authenticates a header read from a stream: unwraps the data key (from
    /// the cache or the keyring), checks key commitment, the header tag and the
    /// caller's context expectations.
    pub async fn begin_decrypt(
        &self,
        raw: UnverifiedHeader,
        options: &DecryptOptions,
    ) -> Result<Decryption> {
        let UnverifiedHeader { header, body, tag } = raw;
        let mut full = header.context.clone();
        let mut reproduced = EncryptionContext::new();
        for (key, value) in &options.context {
            match header.context.get(key) {
                Some(stored) if stored == value => {}
                Some(_) => return Err(Error::Decrypt),
                None => {
                    reproduced.insert(key.clone(), value.clone());
                    full.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(key) = options
            .required_keys
            .iter()
            .find(|k| !full.contains_key(*k))
        {
            return Err(Error::MissingRequiredContext(key.clone()));
        }
        let public_key = match full.get(PUBLIC_KEY_CONTEXT_KEY) {
            Some(encoded) if header.suite.is_signed() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| Error::Decrypt)?,
            ),
            _ => None,
        };
        let full_bytes = context::serialize(&full).map_err(|_| Error::Decrypt)?;
        let cache_key = self.cache.as_ref().map(|cache| {
            let key = DecryptKey {
                key_ids: self.keyring.key_ids(),
                suite: header.suite.id(),
                edks: header.encrypted_data_keys.clone(),
                context: full_bytes.clone(),
            };
            (cache, key)
        });
        let cached = cache_key
            .as_ref()
            .and_then(|(cache, key)| cache.get_decrypt(key));
        let data_key = match cached {
            Some(key) => key,
            None => {
                let key = self
                    .keyring
                    .unwrap(header.suite, &header.encrypted_data_keys, &full)
                    .await
                    .inspect_err(|e| self.forget_on_revocation(e))?
                    .ok_or(Error::Decrypt)?;
                let key = Arc::new(key);
                if let Some((cache, cache_key)) = cache_key {
                    cache.put_decrypt(cache_key, key.clone());
                }
                key
            }
        };
        let opener = Opener::new(
            &header,
            &body,
            &tag,
            &data_key,
            &context::serialize(&reproduced)?,
            public_key,
        )?;
        if header.frame_length > self.config.max_frame_length {
            return Err(Error::FrameLengthLimit {
                frame_length: header.frame_length,
                max: self.config.max_frame_length,
            });
        }
        Ok(Decryption {
            opener,
            context: full,
        })
    }

    /// Encrypts an async stream into an async stream; returns plaintext bytes.
    pub async fn encrypt_async<R, W>(
        &self,
        context: &EncryptionContext,
        options: &EncryptOptions,
        reader: &mut R,
        writer: &mut W,
    ) -> Result<u64>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.begin_encrypt(context, options)
            .await?
            .write_async(reader, writer)
            .await
    }

    /// Decrypts an async stream into an async stream; returns the plaintext
    /// length and the message's full encryption context.
    pub async fn decrypt_async<R, W>(
        &self,
        options: &DecryptOptions,
        reader: &mut R,
        writer: &mut W,
    ) -> Result<(u64, EncryptionContext)>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let raw = UnverifiedHeader::read_async(reader, &self.config).await?;
        let decryption = self.begin_decrypt(raw, options).await?;
        let context = decryption.context.clone();
        let n = decryption.read_async(reader, writer).await?;
        Ok((n, context))
    }

    /// Encrypts a byte slice into a message.
    pub async fn encrypt_to_vec(
        &self,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let options = EncryptOptions {
            plaintext_length: Some(plaintext.len() as u64),
            ..Default::default()
        };
        let encryption = self.begin_encrypt(context, &options).await?;
        let mut out = Vec::new();
        stream::encrypt_slice(encryption.sealer, &encryption.header, plaintext, &mut out)?;
        Ok(out)
    }

    /// Encrypts the plaintext in `buf` into a message in the same buffer
    /// (it grows by the framing overhead, about 32 bytes a frame plus the
    /// header). The fastest path: no second buffer, each byte read and written
    /// about once. Signed suites go through a second buffer.
    pub async fn encrypt_in_place(
        &self,
        buf: &mut Vec<u8>,
        context: &EncryptionContext,
    ) -> Result<()> {
        let options = EncryptOptions {
            plaintext_length: Some(buf.len() as u64),
            ..Default::default()
        };
        let encryption = self.begin_encrypt(context, &options).await?;
        if encryption.sealer.is_signed() {
            let mut out = Vec::new();
            stream::encrypt_slice(encryption.sealer, &encryption.header, buf, &mut out)?;
            *buf = out;
            return Ok(());
        }
        stream::encrypt_in_place(encryption.sealer, &encryption.header, buf)
    }

    /// Decrypts the message in `buf` into its plaintext in the same buffer;
    /// returns the full encryption context. On failure `buf` is wiped and
    /// emptied once frames were opened: nothing of an unauthenticated message
    /// is left (before that — header refused, KMS error — it is untouched).
    pub async fn decrypt_in_place(
        &self,
        buf: &mut Vec<u8>,
        options: &DecryptOptions,
    ) -> Result<EncryptionContext> {
        let mut reader = &buf[..];
        let raw = UnverifiedHeader::read_sync(&mut reader, &self.config);
        let at = buf.len() - reader.len();
        // Until a frame is opened the buffer is left as it was (a KMS error
        // can be retried with the same message).
        let decryption = self.begin_decrypt(raw?, options).await?;
        let context = decryption.context.clone();
        stream::decrypt_in_place(decryption.opener, buf, at)?;
        Ok(context)
    }

    /// Decrypts a whole message held in memory.
    pub async fn decrypt_to_vec(
        &self,
        message: &[u8],
        options: &DecryptOptions,
    ) -> Result<(Vec<u8>, EncryptionContext)> {
        let mut reader = message;
        let raw = UnverifiedHeader::read_sync(&mut reader, &self.config)?;
        let decryption = self.begin_decrypt(raw, options).await?;
        let context = decryption.context.clone();
        let mut out = Vec::new();
        stream::decrypt_slice(decryption.opener, reader, &mut out)?;
        Ok((out, context))
    }
}

impl Encryption {
    /// The serialized header and its auth tag.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header
    }

    /// Encrypts a plaintext held in memory, appending the message to `out`.
    /// Copies each byte once (no frame buffer): the fastest path.
    pub fn seal_slice(self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        stream::encrypt_slice(self.sealer, &self.header, plaintext, out)
    }

    /// Streams a blocking reader into a blocking writer; returns plaintext bytes.
    pub fn write_sync<R: Read, W: Write>(self, reader: &mut R, writer: &mut W) -> Result<u64> {
        stream::encrypt_sync(self.sealer, &self.header, reader, writer)
    }

    /// Streams an async reader into an async writer; returns plaintext bytes.
    pub async fn write_async<R, W>(self, reader: &mut R, writer: &mut W) -> Result<u64>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        stream::encrypt_async(self.sealer, &self.header, reader, writer).await
    }
}

impl Decryption {
    /// The message's full encryption context (stored and supplied).
    pub fn context(&self) -> &EncryptionContext {
        &self.context
    }

    /// Decrypts the rest of a message held in memory (everything after the
    /// header) into `out`; on failure `out` is left empty.
    pub fn open_slice(self, body: &[u8], out: &mut Vec<u8>) -> Result<()> {
        stream::decrypt_slice(self.opener, body, out)
    }

    /// Streams the body from a blocking reader; returns plaintext bytes.
    pub fn read_sync<R: Read, W: Write>(self, reader: &mut R, writer: &mut W) -> Result<u64> {
        stream::decrypt_sync(self.opener, reader, writer)
    }

    /// Streams the body from an async reader; returns plaintext bytes.
    pub async fn read_async<R, W>(self, reader: &mut R, writer: &mut W) -> Result<u64>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        stream::decrypt_async(self.opener, reader, writer).await
    }
}
