//! The streaming drivers: one body of code, expanded twice by macros — once
//! over `std::io` and once over `tokio::io` (the `$($aw)*` tokens are either
//! nothing or `.await`) — so the blocking and the async paths cannot drift apart.
//!
//! Memory: the encryptor holds one frame buffer (frame length + 40 bytes); the
//! decryptor one frame buffer plus the header. Nothing grows with the input.

use std::io::{Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    frame::{Opener, Sealer, MAX_SIGNATURE, PREFIX, TAG},
    header::{self, Header, ParseError},
    Error, Result,
};

/// Reads until `buf` is full or the input ends; returns the bytes read.
macro_rules! read_full {
    ($r:expr, $buf:expr, $($aw:tt)*) => {{
        let buf: &mut [u8] = $buf;
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                break Ok::<usize, std::io::Error>(filled);
            }
            match $r.read(&mut buf[filled..]) $($aw)* {
                Ok(0) => break Ok(filled),
                Ok(k) => filled += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        }
    }};
}

/// Reads exactly `buf.len()` bytes; a short message is [`Error::Decrypt`].
macro_rules! read_exact_msg {
    ($r:expr, $buf:expr, $($aw:tt)*) => {{
        let buf: &mut [u8] = $buf;
        let want = buf.len();
        if read_full!($r, buf, $($aw)*)? != want {
            Err(Error::Decrypt)
        } else {
            Ok::<(), Error>(())
        }
    }};
}

macro_rules! encrypt_body {
    ($sealer:expr, $header:expr, $r:expr, $w:expr, $($aw:tt)*) => {{
        let mut sealer: Sealer = $sealer;
        $w.write_all($header) $($aw)* ?;
        let frame_len = sealer.frame_length;
        let mut buf = sealer.buffer();
        let mut peeked: Option<u8> = None;
        let mut total = 0u64;
        loop {
            let mut n = 0;
            if let Some(byte) = peeked.take() {
                buf[PREFIX] = byte;
                n = 1;
            }
            n += read_full!($r, &mut buf[PREFIX + n..PREFIX + frame_len], $($aw)*)?;
            total += n as u64;
            // One byte of look-ahead tells a full frame that ends the input
            // (followed by an empty final frame) from one that does not.
            let mut one = [0u8; 1];
            let more = n == frame_len && read_full!($r, &mut one, $($aw)*)? == 1;
            if more {
                let range = sealer.seal(&mut buf, n, false)?;
                $w.write_all(&buf[range]) $($aw)* ?;
                peeked = Some(one[0]);
                continue;
            }
            if n == frame_len && n > 0 {
                // The official CLI refuses a full final frame: write the data
                // as a regular frame and close with an empty final frame.
                let range = sealer.seal(&mut buf, n, false)?;
                $w.write_all(&buf[range]) $($aw)* ?;
                n = 0;
            }
            let range = sealer.seal(&mut buf, n, true)?;
            $w.write_all(&buf[range]) $($aw)* ?;
            break;
        }
        let footer = sealer.footer()?;
        $w.write_all(&footer) $($aw)* ?;
        $w.flush() $($aw)* ?;
        Ok::<u64, Error>(total)
    }};
}

macro_rules! read_header {
    ($r:expr, $max_edks:expr, $($aw:tt)*) => {{
        // Read exactly as many bytes as the parser asks for, never more, so the
        // stream is positioned at the first frame afterwards. Every field is
        // u16-length-prefixed and the key count is capped, so this is bounded.
        let mut bytes = Vec::with_capacity(256);
        let parsed = loop {
            match Header::parse(&bytes, $max_edks) {
                Ok(parsed) => break Ok(parsed),
                Err(ParseError::Incomplete(needed)) => {
                    let have = bytes.len();
                    bytes.resize(needed, 0);
                    read_exact_msg!($r, &mut bytes[have..], $($aw)*)?;
                }
                Err(ParseError::Version(v)) if v == 0x01 => break Err(Error::UnsupportedVersion(v)),
                Err(_) => break Err(Error::Decrypt),
            }
        };
        match parsed {
            Ok((header, len)) => {
                debug_assert_eq!(len, bytes.len());
                let mut tag = [0u8; header::AUTH_TAG_LEN];
                read_exact_msg!($r, &mut tag, $($aw)*)?;
                Ok::<(Header, Vec<u8>, [u8; header::AUTH_TAG_LEN]), Error>((header, bytes, tag))
            }
            Err(e) => Err(e),
        }
    }};
}

macro_rules! decrypt_body {
    ($opener:expr, $r:expr, $w:expr, $($aw:tt)*) => {{
        let mut opener: Opener = $opener;
        let frame_len = opener.frame_length;
        let mut buf = vec![0u8; frame_len + TAG];
        let mut total = 0u64;
        loop {
            let mut marker = [0u8; 4];
            read_exact_msg!($r, &mut marker, $($aw)*)?;
            opener.hash(&marker);
            let marker = u32::from_be_bytes(marker);
            if marker != u32::MAX {
                let mut iv = [0u8; 12];
                read_exact_msg!($r, &mut iv, $($aw)*)?;
                opener.hash(&iv);
                opener.check_frame_header(marker, &iv)?;
                read_exact_msg!($r, &mut buf[..], $($aw)*)?;
                opener.hash(&buf);
                let n = opener.open(&mut buf, false)?;
                $w.write_all(&buf[..n]) $($aw)* ?;
                total += n as u64;
                continue;
            }
            let mut fixed = [0u8; 20];
            read_exact_msg!($r, &mut fixed, $($aw)*)?;
            opener.hash(&fixed);
            let seq = u32::from_be_bytes(fixed[0..4].try_into().expect("4 bytes"));
            opener.check_frame_header(seq, &fixed[4..16])?;
            let len = u32::from_be_bytes(fixed[16..20].try_into().expect("4 bytes")) as usize;
            if len > frame_len {
                return Err(Error::Decrypt);
            }
            let frame = &mut buf[..len + TAG];
            read_exact_msg!($r, frame, $($aw)*)?;
            opener.hash(frame);
            let n = opener.open(frame, true)?;
            if opener.is_signed() {
                let mut sig_len = [0u8; 2];
                read_exact_msg!($r, &mut sig_len, $($aw)*)?;
                let sig_len = usize::from(u16::from_be_bytes(sig_len));
                if sig_len > MAX_SIGNATURE {
                    return Err(Error::Decrypt);
                }
                let mut sig = [0u8; MAX_SIGNATURE];
                read_exact_msg!($r, &mut sig[..sig_len], $($aw)*)?;
                opener.verify(&sig[..sig_len])?;
            }
            // Nothing may follow the message; only then is the final frame released.
            let mut one = [0u8; 1];
            if read_full!($r, &mut one, $($aw)*)? != 0 {
                return Err(Error::Decrypt);
            }
            $w.write_all(&buf[..n]) $($aw)* ?;
            $w.flush() $($aw)* ?;
            total += n as u64;
            break Ok::<u64, Error>(total);
        }
    }};
}

pub(crate) fn encrypt_sync<R: Read, W: Write>(
    sealer: Sealer,
    header: &[u8],
    r: &mut R,
    w: &mut W,
) -> Result<u64> {
    encrypt_body!(sealer, header, r, w,)
}

pub(crate) async fn encrypt_async<R, W>(
    sealer: Sealer,
    header: &[u8],
    r: &mut R,
    w: &mut W,
) -> Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    encrypt_body!(sealer, header, r, w, .await)
}

pub(crate) type RawHeader = (Header, Vec<u8>, [u8; header::AUTH_TAG_LEN]);

pub(crate) fn read_header_sync<R: Read>(r: &mut R, max_edks: usize) -> Result<RawHeader> {
    read_header!(r, max_edks,)
}

pub(crate) async fn read_header_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max_edks: usize,
) -> Result<RawHeader> {
    read_header!(r, max_edks, .await)
}

pub(crate) fn decrypt_sync<R: Read, W: Write>(opener: Opener, r: &mut R, w: &mut W) -> Result<u64> {
    decrypt_body!(opener, r, w,)
}

pub(crate) async fn decrypt_async<R, W>(opener: Opener, r: &mut R, w: &mut W) -> Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    decrypt_body!(opener, r, w, .await)
}

/// Encrypts a whole plaintext held in memory into `out` (one copy).
pub(crate) fn encrypt_slice(
    mut sealer: Sealer,
    header: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let frame_len = sealer.frame_length;
    let frames = plaintext.len() / frame_len + 1;
    out.reserve(header.len() + plaintext.len() + frames * (PREFIX + TAG) + 2 + MAX_SIGNATURE);
    out.extend_from_slice(header);
    // An exact multiple (and the empty plaintext) ends with an empty final frame.
    let full = plaintext.len() / frame_len;
    for chunk in plaintext[..full * frame_len].chunks_exact(frame_len) {
        sealer.seal_into(out, chunk, false)?;
    }
    sealer.seal_into(out, &plaintext[full * frame_len..], true)?;
    let footer = sealer.footer()?;
    out.extend_from_slice(&footer);
    Ok(())
}

/// Decrypts the body of a message held in memory (everything after the
/// header) into `out` (one copy). On any error `out` is cleared: nothing of an
/// unauthenticated message is returned.
pub(crate) fn decrypt_slice(mut opener: Opener, body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let result = decrypt_slice_inner(&mut opener, body, out);
    if result.is_err() {
        out.clear();
    }
    result
}

fn decrypt_slice_inner(opener: &mut Opener, body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let frame_len = opener.frame_length;
    out.reserve(body.len());
    let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
        let end = at.checked_add(n).ok_or(Error::Decrypt)?;
        let bytes = body.get(*at..end).ok_or(Error::Decrypt)?;
        *at = end;
        Ok(bytes)
    };
    let mut at = 0usize;
    loop {
        let start = at;
        let marker = u32::from_be_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
        if marker != u32::MAX {
            let iv = take(&mut at, 12)?;
            opener.check_frame_header(marker, iv)?;
            let ciphertext = take(&mut at, frame_len)?;
            let tag = take(&mut at, TAG)?;
            opener.hash(&body[start..at]);
            opener.open_into(out, ciphertext, tag, false)?;
            continue;
        }
        let fixed = take(&mut at, 20)?;
        let seq = u32::from_be_bytes(fixed[0..4].try_into().expect("4 bytes"));
        opener.check_frame_header(seq, &fixed[4..16])?;
        let len = u32::from_be_bytes(fixed[16..20].try_into().expect("4 bytes")) as usize;
        if len > frame_len {
            return Err(Error::Decrypt);
        }
        let ciphertext = take(&mut at, len)?;
        let tag = take(&mut at, TAG)?;
        opener.hash(&body[start..at]);
        opener.open_into(out, ciphertext, tag, true)?;
        if opener.is_signed() {
            let sig_len = usize::from(u16::from_be_bytes(
                take(&mut at, 2)?.try_into().expect("2 bytes"),
            ));
            if sig_len > MAX_SIGNATURE {
                return Err(Error::Decrypt);
            }
            let signature = take(&mut at, sig_len)?;
            opener.verify(signature)?;
        }
        if at != body.len() {
            return Err(Error::Decrypt);
        }
        return Ok(());
    }
}

/// Turns the plaintext in `buf` into the message, in the same buffer: the
/// buffer grows by the framing overhead, then the frames are moved to their
/// final places and sealed there from the last to the first, so each byte is
/// read and written about once — the memory traffic of in-place AES-GCM.
/// Unsigned suites only (the signature hash needs the frames in order).
pub(crate) fn encrypt_in_place(sealer: Sealer, header: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    debug_assert!(!sealer.is_signed());
    let frame_len = sealer.frame_length;
    let n = buf.len();
    let full = n / frame_len;
    let rem = n - full * frame_len;
    if full >= u32::MAX as usize {
        return Err(Error::TooLong);
    }
    let regular = 16 + frame_len + TAG;
    let h = header.len();
    let total = h + full * regular + PREFIX + rem + TAG;
    buf.resize(total, 0);
    // The final frame, then the regular ones, back to front. Each frame is
    // sealed where its plaintext lies (AES-GCM streaming through memory, as
    // raw in-place sealing does), then moved right to its final place while it
    // is still in cache; every move lands on bytes already processed.
    let mut place = |k: usize, len: usize, last: bool, at: usize| -> Result<()> {
        let head = if last { PREFIX } else { 16 };
        let src = k * frame_len;
        let tag = sealer.seal_detached(&mut buf[src..src + len], k as u32 + 1, last)?;
        buf.copy_within(src..src + len, at + head);
        Sealer::frame_header(&mut buf[at..at + head], k as u32 + 1, last, len);
        buf[at + head + len..at + head + len + TAG].copy_from_slice(tag.as_ref());
        Ok(())
    };
    place(full, rem, true, h + full * regular)?;
    for k in (0..full).rev() {
        place(k, frame_len, false, h + k * regular)?;
    }
    buf[..h].copy_from_slice(header);
    Ok(())
}

/// Opens the frames of the message in `buf` (from `at`, after the header) in
/// place and moves each plaintext down to the front; `buf` ends holding the
/// plaintext. On any error it is wiped and emptied.
pub(crate) fn decrypt_in_place(mut opener: Opener, buf: &mut Vec<u8>, at: usize) -> Result<()> {
    match decrypt_in_place_inner(&mut opener, buf, at) {
        Ok(len) => {
            buf.truncate(len);
            Ok(())
        }
        Err(e) => {
            buf.fill(0);
            buf.clear();
            Err(e)
        }
    }
}

fn decrypt_in_place_inner(opener: &mut Opener, buf: &mut [u8], mut at: usize) -> Result<usize> {
    let frame_len = opener.frame_length;
    let end = buf.len();
    let need = |at: usize, n: usize| -> Result<usize> {
        at.checked_add(n)
            .filter(|&e| e <= end)
            .ok_or(Error::Decrypt)
    };
    let mut written = 0usize;
    loop {
        let start = at;
        let marker = u32::from_be_bytes(buf[at..need(at, 4)?].try_into().expect("4 bytes"));
        at += 4;
        let last = marker == u32::MAX;
        let (seq, len) = if last {
            let fixed_end = need(at, 20)?;
            let seq = u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
            let len =
                u32::from_be_bytes(buf[at + 16..fixed_end].try_into().expect("4 bytes")) as usize;
            opener.check_frame_header(seq, &buf[at + 4..at + 16])?;
            at = fixed_end;
            (seq, len)
        } else {
            opener.check_frame_header(marker, &buf[at..need(at, 12)?])?;
            at += 12;
            (marker, frame_len)
        };
        let _ = seq;
        if len > frame_len {
            return Err(Error::Decrypt);
        }
        let frame_end = need(at, len + TAG)?;
        opener.hash(&buf[start..frame_end]);
        let (data, tag) = buf[at..frame_end].split_at_mut(len);
        opener.open_detached(data, tag, last)?;
        buf.copy_within(at..at + len, written);
        written += len;
        at = frame_end;
        if !last {
            continue;
        }
        if opener.is_signed() {
            let sig_at = need(at, 2)?;
            let sig_len = usize::from(u16::from_be_bytes(
                buf[at..sig_at].try_into().expect("2 bytes"),
            ));
            if sig_len > MAX_SIGNATURE {
                return Err(Error::Decrypt);
            }
            let sig_end = need(sig_at, sig_len)?;
            let mut signature = [0u8; MAX_SIGNATURE];
            signature[..sig_len].copy_from_slice(&buf[sig_at..sig_end]);
            opener.verify(&signature[..sig_len])?;
            at = sig_end;
        }
        if at != end {
            return Err(Error::Decrypt);
        }
        return Ok(written);
    }
}
