//! The framed body and the footer (`data-format/message-body.md`,
//! `message-body-aad.md`, `message-footer.md`).
//!
//! ```text
//! regular frame: | seq (4) | IV (12) | ciphertext (frame length) | tag (16) |
//! final frame:   | FF FF FF FF | seq (4) | IV (12) | len (4) | ciphertext (len) | tag (16) |
//! footer (signed suites only): | sig len (2) | DER ECDSA P-384 signature |
//! IV  = 8 zero bytes ‖ seq;   sequence numbers start at 1
//! AAD = message id (32) ‖ "AWSKMSEncryptionClient Frame" | "... Final Frame" ‖ seq (4) ‖ len (8)
//! ```
//!
//! Both sides work in place in one buffer allocated once per message: the
//! plaintext is read straight into the buffer at offset [`PREFIX`], sealed in
//! place, and the frame header written into the bytes before it, so each frame
//! leaves in one `write_all` and nothing is allocated per frame.

use aws_lc_rs::{aead, constant_time, digest, signature};
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::{cache::EncryptMaterials, header::Header, keys::DataKey, suite, Error, Result, Suite};

pub(crate) const TAG: usize = 16;
/// Room before the plaintext for the largest frame header (final frame: 24 bytes).
pub(crate) const PREFIX: usize = 24;
const FINAL_MARKER: u32 = u32::MAX;
const FRAME_LABEL: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_LABEL: &[u8] = b"AWSKMSEncryptionClient Final Frame";
/// A DER ECDSA P-384 signature is at most 104 bytes; anything longer is refused
/// before it is read.
pub(crate) const MAX_SIGNATURE: usize = 128;

fn nonce(seq: u32) -> aead::Nonce {
    let mut iv = [0u8; 12];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    aead::Nonce::assume_unique_for_key(iv)
}

/// Builds the frame AAD on the stack.
fn frame_aad(message_id: &[u8; 32], last: bool, seq: u32, len: usize, out: &mut [u8; 80]) -> usize {
    let label = if last { FINAL_LABEL } else { FRAME_LABEL };
    out[..32].copy_from_slice(message_id);
    let mut at = 32;
    out[at..at + label.len()].copy_from_slice(label);
    at += label.len();
    out[at..at + 4].copy_from_slice(&seq.to_be_bytes());
    at += 4;
    out[at..at + 8].copy_from_slice(&(len as u64).to_be_bytes());
    at + 8
}

/// Header auth tag: AES-GCM over nothing, IV zero, AAD = header body ‖ required context.
fn header_tag(key: &aead::LessSafeKey, body: &[u8], required: &[u8]) -> Result<aead::Tag> {
    let mut aad = Vec::with_capacity(body.len() + required.len());
    aad.extend_from_slice(body);
    aad.extend_from_slice(required);
    key.seal_in_place_separate_tag(
        aead::Nonce::assume_unique_for_key([0u8; 12]),
        aead::Aad::from(&aad[..]),
        &mut [],
    )
    .map_err(|_| Error::Crypto)
}

/// Seals the frames of one message.
pub(crate) struct Sealer {
    key: aead::LessSafeKey,
    message_id: [u8; 32],
    pub(crate) frame_length: usize,
    seq: u32,
    signing: Option<(Arc<EncryptMaterials>, digest::Context)>,
}

impl Sealer {
    /// Derives the keys, finishes the header (commitment key, auth tag) and
    /// returns the sealer with the serialized header and tag.
    pub(crate) fn new(
        header: &mut Header,
        required_context: &[u8],
        materials: Arc<EncryptMaterials>,
    ) -> Result<(Sealer, Vec<u8>)> {
        let derived = suite::derive(header.suite, &materials.data_key, &header.message_id)?;
        header.commitment = *derived.commitment;
        let mut bytes = header.serialize_body()?;
        let tag = header_tag(&derived.key, &bytes, required_context)?;
        bytes.extend_from_slice(tag.as_ref());
        let signing = materials.signing_key.is_some().then(|| {
            let mut hash = digest::Context::new(&digest::SHA384);
            hash.update(&bytes);
            (materials.clone(), hash)
        });
        let sealer = Sealer {
            key: derived.key,
            message_id: header.message_id,
            frame_length: header.frame_length as usize,
            seq: 1,
            signing,
        };
        Ok((sealer, bytes))
    }

    /// A buffer big enough for one frame in place.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        vec![0u8; PREFIX + self.frame_length + TAG]
    }

    /// Seals `len` plaintext bytes at `buf[PREFIX..]` in place and returns the
    /// range of `buf` holding the whole frame.
    pub(crate) fn seal(
        &mut self,
        buf: &mut [u8],
        len: usize,
        last: bool,
    ) -> Result<std::ops::Range<usize>> {
        let seq = self.seq;
        if !last && seq == u32::MAX {
            return Err(Error::TooLong);
        }
        let mut aad = [0u8; 80];
        let aad_len = frame_aad(&self.message_id, last, seq, len, &mut aad);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(seq),
                aead::Aad::from(&aad[..aad_len]),
                &mut buf[PREFIX..PREFIX + len],
            )
            .map_err(|_| Error::Crypto)?;
        let end = PREFIX + len + TAG;
        buf[PREFIX + len..end].copy_from_slice(tag.as_ref());
        let start = if last {
            buf[0..4].copy_from_slice(&FINAL_MARKER.to_be_bytes());
            buf[4..8].copy_from_slice(&seq.to_be_bytes());
            buf[8..16].fill(0);
            buf[16..20].copy_from_slice(&seq.to_be_bytes());
            buf[20..24].copy_from_slice(&(len as u32).to_be_bytes());
            0
        } else {
            buf[8..12].copy_from_slice(&seq.to_be_bytes());
            buf[12..20].fill(0);
            buf[20..24].copy_from_slice(&seq.to_be_bytes());
            8
        };
        if let Some((_, hash)) = &mut self.signing {
            hash.update(&buf[start..end]);
        }
        self.seq = seq.wrapping_add(1);
        Ok(start..end)
    }

    /// Appends one sealed frame of `plaintext` to `out`: the plaintext is copied
    /// once, straight into its place in the output, and sealed there (the
    /// in-memory path has no separate frame buffer and so one copy fewer).
    pub(crate) fn seal_into(
        &mut self,
        out: &mut Vec<u8>,
        plaintext: &[u8],
        last: bool,
    ) -> Result<()> {
        let seq = self.seq;
        if !last && seq == u32::MAX {
            return Err(Error::TooLong);
        }
        let start = out.len();
        if last {
            out.extend_from_slice(&FINAL_MARKER.to_be_bytes());
        }
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&seq.to_be_bytes());
        if last {
            out.extend_from_slice(&(plaintext.len() as u32).to_be_bytes());
        }
        let body = out.len();
        out.extend_from_slice(plaintext);
        let mut aad = [0u8; 80];
        let aad_len = frame_aad(&self.message_id, last, seq, plaintext.len(), &mut aad);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(seq),
                aead::Aad::from(&aad[..aad_len]),
                &mut out[body..],
            )
            .map_err(|_| Error::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        if let Some((_, hash)) = &mut self.signing {
            hash.update(&out[start..]);
        }
        self.seq = seq.wrapping_add(1);
        Ok(())
    }

    /// Seals one frame's plaintext where it lies and returns its tag, in any
    /// frame order (the in-place path goes back to front). Unsigned suites
    /// only: the signature hash needs the frames in order.
    pub(crate) fn seal_detached(&self, data: &mut [u8], seq: u32, last: bool) -> Result<aead::Tag> {
        if self.signing.is_some() || (!last && seq == u32::MAX) {
            return Err(Error::TooLong);
        }
        let mut aad = [0u8; 80];
        let aad_len = frame_aad(&self.message_id, last, seq, data.len(), &mut aad);
        self.key
            .seal_in_place_separate_tag(nonce(seq), aead::Aad::from(&aad[..aad_len]), data)
            .map_err(|_| Error::Crypto)
    }

    /// Writes a frame header (16 bytes, or 24 for the final frame) into `out`.
    pub(crate) fn frame_header(out: &mut [u8], seq: u32, last: bool, len: usize) {
        let mut at = 0;
        if last {
            out[..4].copy_from_slice(&FINAL_MARKER.to_be_bytes());
            at = 4;
        }
        out[at..at + 4].copy_from_slice(&seq.to_be_bytes());
        out[at + 4..at + 12].fill(0);
        out[at + 12..at + 16].copy_from_slice(&seq.to_be_bytes());
        if last {
            out[20..24].copy_from_slice(&(len as u32).to_be_bytes());
        }
    }

    pub(crate) fn is_signed(&self) -> bool {
        self.signing.is_some()
    }

    /// The footer for signed suites (empty otherwise).
    pub(crate) fn footer(self) -> Result<Vec<u8>> {
        let Some((materials, hash)) = self.signing else {
            return Ok(Vec::new());
        };
        let pair = materials.signing_key.as_ref().ok_or(Error::Crypto)?;
        let sig = pair
            .sign_digest(&hash.finish())
            .map_err(|_| Error::Crypto)?;
        let mut out = Vec::with_capacity(2 + sig.as_ref().len());
        out.extend_from_slice(&(sig.as_ref().len() as u16).to_be_bytes());
        out.extend_from_slice(sig.as_ref());
        Ok(out)
    }
}

/// Opens the frames of one message, after its header has been authenticated.
pub(crate) struct Opener {
    key: aead::LessSafeKey,
    message_id: [u8; 32],
    pub(crate) frame_length: usize,
    pub(crate) seq: u32,
    verifying: Option<(signature::UnparsedPublicKey<Vec<u8>>, digest::Context)>,
}

impl Opener {
    /// Checks key commitment and the header auth tag, both in constant time;
    /// any mismatch is [`Error::Decrypt`].
    pub(crate) fn new(
        header: &Header,
        header_bytes: &[u8],
        header_tag_bytes: &[u8],
        data_key: &DataKey,
        required_context: &[u8],
        public_key: Option<Vec<u8>>,
    ) -> Result<Opener> {
        let derived = suite::derive(header.suite, data_key, &header.message_id)?;
        if !bool::from(derived.commitment[..].ct_eq(&header.commitment[..])) {
            return Err(Error::Decrypt);
        }
        let tag = header_tag(&derived.key, header_bytes, required_context)?;
        constant_time::verify_slices_are_equal(tag.as_ref(), header_tag_bytes)
            .map_err(|_| Error::Decrypt)?;
        let verifying = match (header.suite, public_key) {
            (Suite::Aes256GcmHkdfSha512CommitEcdsaP384, Some(point)) => {
                let mut hash = digest::Context::new(&digest::SHA384);
                hash.update(header_bytes);
                hash.update(header_tag_bytes);
                Some((
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_ASN1, point),
                    hash,
                ))
            }
            (Suite::Aes256GcmHkdfSha512CommitEcdsaP384, None) => return Err(Error::Decrypt),
            (Suite::Aes256GcmHkdfSha512Commit, _) => None,
        };
        Ok(Opener {
            key: derived.key,
            message_id: header.message_id,
            frame_length: header.frame_length as usize,
            seq: 1,
            verifying,
        })
    }

    pub(crate) fn is_signed(&self) -> bool {
        self.verifying.is_some()
    }

    /// Feeds frame bytes as read from the wire to the signature hash.
    pub(crate) fn hash(&mut self, bytes: &[u8]) {
        if let Some((_, hash)) = &mut self.verifying {
            hash.update(bytes);
        }
    }

    /// Checks the sequence number and IV of the next frame.
    pub(crate) fn check_frame_header(&self, seq: u32, iv: &[u8]) -> Result<()> {
        let mut expected = [0u8; 12];
        expected[8..].copy_from_slice(&self.seq.to_be_bytes());
        if seq != self.seq || iv != expected {
            return Err(Error::Decrypt);
        }
        Ok(())
    }

    /// Opens `buf` = ciphertext ‖ tag in place; returns the plaintext length.
    pub(crate) fn open(&mut self, buf: &mut [u8], last: bool) -> Result<usize> {
        let len = buf.len().checked_sub(TAG).ok_or(Error::Decrypt)?;
        let mut aad = [0u8; 80];
        let aad_len = frame_aad(&self.message_id, last, self.seq, len, &mut aad);
        self.key
            .open_in_place(nonce(self.seq), aead::Aad::from(&aad[..aad_len]), buf)
            .map_err(|_| Error::Decrypt)?;
        if !last {
            // The final frame may carry sequence number 2^32 - 1; a regular one may not.
            self.seq = self.seq.checked_add(1).ok_or(Error::Decrypt)?;
        }
        Ok(len)
    }

    /// Copies one frame's ciphertext to the end of `out` and opens it there;
    /// on failure `out` is truncated back.
    pub(crate) fn open_into(
        &mut self,
        out: &mut Vec<u8>,
        ciphertext: &[u8],
        tag: &[u8],
        last: bool,
    ) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(ciphertext);
        let mut aad = [0u8; 80];
        let aad_len = frame_aad(&self.message_id, last, self.seq, ciphertext.len(), &mut aad);
        let opened = self.key.open_in_place_separate_tag(
            nonce(self.seq),
            aead::Aad::from(&aad[..aad_len]),
            tag,
            &mut out[start..],
        );
        if opened.is_err() {
            out.truncate(start);
            return Err(Error::Decrypt);
        }
        if !last {
            self.seq = self.seq.checked_add(1).ok_or(Error::Decrypt)?;
        }
        Ok(())
    }

    /// Opens `data` in place with the tag given apart.
    pub(crate) fn open_detached(&mut self, data: &mut [u8], tag: &[u8], last: bool) -> Result<()> {
        let mut aad = [0u8; 80];
        let aad_len = frame_aad(&self.message_id, last, self.seq, data.len(), &mut aad);
        self.key
            .open_in_place_separate_tag(
                nonce(self.seq),
                aead::Aad::from(&aad[..aad_len]),
                tag,
                data,
            )
            .map_err(|_| Error::Decrypt)?;
        if !last {
            self.seq = self.seq.checked_add(1).ok_or(Error::Decrypt)?;
        }
        Ok(())
    }

    /// Verifies the footer signature over everything hashed so far.
    pub(crate) fn verify(&mut self, signature: &[u8]) -> Result<()> {
        let Some((key, hash)) = self.verifying.take() else {
            return Ok(());
        };
        key.verify_digest(&hash.finish(), signature)
            .map_err(|_| Error::Decrypt)
    }
}
