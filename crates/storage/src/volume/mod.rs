//! Encrypted block volumes: one file per volume, a 4 KiB header then AES-256-XTS sectors.
//!
//! The file layout is exactly what
//! `cryptsetup open --type plain -c aes-xts-plain64 -s 512 --sector-size 4096 --iv-large-sectors --offset 8`
//! reads given the unwrapped 64-byte key (`--offset` counts 512-byte units, so 8 skips the header):
//!
//! ```text
//!  file offset          content
//!  0 .. 4096            header (see [`header`]): ids, key ARN, wrapped key, MAC
//!  4096 + 4096·n ..     sector n: AES-256-XTS(K1‖K2, tweak = n as u64 LE ‖ 0⁸) of 4096 bytes
//! ```
//!
//! Lifecycle: [`VolumeFile::create`] writes the header (sealed with the data key)
//! and a sparse data area; [`VolumeFile::open`] checks the header's structure;
//! [`VolumeFile::unlock`] checks the MAC with the unwrapped key and yields an
//! attached [`Volume`], whose [`Volume::detach`] wipes the key. The KMS steps
//! (generate, grant, decrypt, retire) live in [`kms`].
//!
//! Descriptors: an attached volume does not hold its file open. The file is open
//! while someone keeps it open ([`Volume::keep_open`]: an NBD connection, a backup's
//! copy, a scan) and is closed when the last of them lets go; an I/O outside any of
//! them opens the file for that one call. Each opening checks that the path still
//! names the file whose header was authenticated (same device and inode), so a file
//! swapped in under the path is refused, not served. A node with thousands of idle
//! disks thus holds no descriptor for them.

pub mod header;
pub mod kms;
pub mod xts;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use zeroize::Zeroize;

use crate::error::{Error, Result};
use header::{VolumeHeader, DATA_OFFSET, HEADER_LEN};
use xts::{DataKey, XtsCipher, SECTOR_SIZE};

const SECTOR: u64 = SECTOR_SIZE as u64;
/// Stripes of the lock that serializes read-modify-write of partially written sectors.
const RMW_STRIPES: usize = 64;
/// WRITE_ZEROES encrypts at most this much at once, so memory stays bounded.
const ZERO_CHUNK: u64 = 1 << 20;

/// A volume file whose header has been read and structurally checked, still locked.
pub struct VolumeFile {
    path: PathBuf,
    file: File,
    writable: bool,
    header: VolumeHeader,
    raw_header: Box<[u8; HEADER_LEN]>,
}

/// Which file a path named when it was opened: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(file: &File, path: &Path) -> Result<FileIdentity> {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        Ok(FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl VolumeFile {
    /// Creates a new volume file (never overwrites one) with a header sealed by `key`
    /// and a sparse, never-written data area of `header.size` bytes.
    pub fn create(path: &Path, header: VolumeHeader, key: &DataKey) -> Result<VolumeFile> {
        let raw_header = header.seal(key)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::AlreadyExists {
                        path: path.to_owned(),
                    }
                } else {
                    Error::io(format!("create {}", path.display()), e)
                }
            })?;
        let ctx = || format!("write {}", path.display());
        file.write_all_at(&raw_header[..], 0)
            .map_err(|e| Error::io(ctx(), e))?;
        file.set_len(DATA_OFFSET + header.size)
            .map_err(|e| Error::io(ctx(), e))?;
        file.sync_all().map_err(|e| Error::io(ctx(), e))?;
        // The new name must be durable too, or a crash can lose an acknowledged volume.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(ctx(), e))?;
        }
        Ok(VolumeFile {
            path: path.to_owned(),
            file,
            writable: true,
            header,
            raw_header,
        })
    }

    /// Opens a volume file read-write and checks its header's structure and the
    /// file's length. Nothing is written.
    pub fn open(path: &Path) -> Result<VolumeFile> {
        Self::open_with(path, true)
    }

    /// Like [`VolumeFile::open`], but the file is opened read-only, for scans
    /// that must not be able to change a volume; writes to it fail.
    pub fn open_read_only(path: &Path) -> Result<VolumeFile> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, writable: bool) -> Result<VolumeFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        let mut raw_header = Box::new([0u8; HEADER_LEN]);
        let have = (len as usize).min(HEADER_LEN);
        file.read_exact_at(&mut raw_header[..have], 0)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let header = VolumeHeader::parse(&raw_header[..have], path)?;
        if len < DATA_OFFSET + header.size {
            return Err(Error::TruncatedData {
                path: path.to_owned(),
                expected: DATA_OFFSET + header.size,
                actual: len,
            });
        }
        Ok(VolumeFile {
            path: path.to_owned(),
            file,
            writable,
            header,
            raw_header,
        })
    }

    pub fn header(&self) -> &VolumeHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the header MAC with the unwrapped key and attaches the volume.
    /// On a mismatch the key is dropped (wiped) and nothing is written.
    ///
    /// The file is closed here: the volume opens it again when it is used (see
    /// the module's notes on descriptors), and only if it is still this file.
    pub fn unlock(self, key: DataKey) -> Result<Volume> {
        header::verify_mac(&self.raw_header, &key)?;
        let identity = FileIdentity::of(&self.file, &self.path)?;
        let cipher = XtsCipher::new(&key);
        drop(key);
        drop(self.file);
        Ok(Volume {
            id: self.header.volume_id,
            size: self.header.size,
            path: self.path,
            writable: self.writable,
            identity,
            open: Mutex::new(OpenFile::default()),
            cipher: RwLock::new(Some(cipher)),
            detached: AtomicBool::new(false),
            rmw: (0..RMW_STRIPES).map(|_| Mutex::new(())).collect(),
            raw_header: self.raw_header,
            gate: Mutex::new(WriteGate::default()),
            gate_changed: Condvar::new(),
        })
    }
}

/// An attached volume: the XTS key is in memory and sectors can be read and written.
///
/// All I/O is positioned (`pread`/`pwrite`), so one `Volume` serves many threads
/// at once. Calls block: run them on a blocking pool from async code.
pub struct Volume {
    id: String,
    size: u64,
    /// Where the file is, whether it is opened for writing, and which file it must be.
    path: PathBuf,
    writable: bool,
    identity: FileIdentity,
    /// The file while someone keeps it open ([`Volume::keep_open`]).
    open: Mutex<OpenFile>,
    /// `None` once detached; the dropped cipher wipes its key schedules.
    cipher: RwLock<Option<XtsCipher>>,
    detached: AtomicBool,
    rmw: Vec<Mutex<()>>,
    /// Kept to check the MAC again when the key comes back ([`Volume::reattach`]).
    raw_header: Box<[u8; HEADER_LEN]>,
    /// Writes in flight and freezes held ([`Volume::freeze_writes`]).
    gate: Mutex<WriteGate>,
    gate_changed: Condvar,
}

/// Those keeping a volume's file open, and the file while there are any.
#[derive(Default)]
struct OpenFile {
    keepers: usize,
    file: Option<Arc<File>>,
}

/// Keeps a volume's file open until dropped (the last one dropped closes it). See
/// [`Volume::keep_open`].
pub struct KeepOpen<'a> {
    volume: &'a Volume,
}

impl Drop for KeepOpen<'_> {
    fn drop(&mut self) {
        let closed = {
            let mut open = self.volume.lock_open();
            open.keepers -= 1;
            if open.keepers == 0 {
                open.file.take()
            } else {
                None
            }
        };
        // Closed outside the lock; I/O still running holds its own reference.
        drop(closed);
    }
}

#[derive(Default)]
struct WriteGate {
    writing: u32,
    freezes: u32,
}

/// Held while a consistent copy of a volume is taken: every write to the volume
/// waits until it is dropped (reads go on). See [`Volume::freeze_writes`].
pub struct WriteFreeze {
    volume: Arc<Volume>,
}

impl Drop for WriteFreeze {
    fn drop(&mut self) {
        let mut gate = self.volume.lock_gate();
        gate.freezes -= 1;
        drop(gate);
        self.volume.gate_changed.notify_all();
    }
}

impl Volume {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Usable size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_attached(&self) -> bool {
        !self.detached.load(Ordering::Acquire)
    }

    /// Wipes the key. Every later read or write fails with [`Error::Detached`];
    /// calls already decrypting finish first (the write lock waits for them), so
    /// no plaintext is produced after this returns. The file is closed too (I/O
    /// in flight keeps its own reference until it ends); a reattached volume
    /// opens it again when it is next used.
    pub fn detach(&self) {
        self.detached.store(true, Ordering::Release);
        let mut cipher = self.cipher.write().unwrap_or_else(|p| p.into_inner());
        *cipher = None;
        drop(cipher);
        let closed = self.lock_open().file.take();
        drop(closed);
    }

    /// Keeps the volume's file open until the returned guard is dropped, so a run
    /// of I/O (a client's connection, a copy) opens it once; the file itself is
    /// opened by the first I/O, not here. Without a guard each call opens and
    /// closes the file.
    pub fn keep_open(&self) -> KeepOpen<'_> {
        self.lock_open().keepers += 1;
        KeepOpen { volume: self }
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, OpenFile> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open file: the one kept open, or one opened now (kept if someone keeps
    /// the volume open and it is attached). Refuses a path that no longer names
    /// the file the volume was unlocked from.
    fn file(&self) -> Result<Arc<File>> {
        let mut open = self.lock_open();
        if let Some(file) = &open.file {
            return Ok(file.clone());
        }
        let context = || format!("open volume {} ({})", self.id, self.path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(self.writable)
            .open(&self.path)
            .map_err(|e| Error::io(context(), e))?;
        if FileIdentity::of(&file, &self.path)? != self.identity {
            return Err(Error::io(
                context(),
                std::io::Error::other("the path no longer names the volume's file"),
            ));
        }
        let file = Arc::new(file);
        if open.keepers > 0 && self.is_attached() {
            open.file = Some(file.clone());
        }
        Ok(file)
    }

    /// Installs the key again after a detach (KMS allows it again), once the
    /// header MAC proves it is this volume's key. A wrong key changes nothing.
    pub fn reattach(&self, key: DataKey) -> Result<()> {
        header::verify_mac(&self.raw_header, &key)?;
        let mut cipher = self.cipher.write().unwrap_or_else(|p| p.into_inner());
        *cipher = Some(XtsCipher::new(&key));
        self.detached.store(false, Ordering::Release);
        Ok(())
    }

    fn lock_gate(&self) -> std::sync::MutexGuard<'_, WriteGate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks every new write until the returned guard is dropped, after waiting
    /// for the writes already in flight to land: between the two, the volume's
    /// bytes do not change, so a copy taken meanwhile is one point in time (as
    /// of a crash: what the writer had not flushed may or may not be in it).
    /// Writes wait rather than fail, so an NBD client sees a pause, not an
    /// error. Blocks: call it from a blocking thread.
    pub fn freeze_writes(self: &Arc<Self>) -> WriteFreeze {
        let mut gate = self.lock_gate();
        gate.freezes += 1;
        while gate.writing > 0 {
            gate = self
                .gate_changed
                .wait(gate)
                .unwrap_or_else(|p| p.into_inner());
        }
        WriteFreeze {
            volume: self.clone(),
        }
    }

    /// Waits while the volume is frozen, then counts a write in flight.
    fn enter_write(&self) {
        let mut gate = self.lock_gate();
        while gate.freezes > 0 {
            gate = self
                .gate_changed
                .wait(gate)
                .unwrap_or_else(|p| p.into_inner());
        }
        gate.writing += 1;
    }

    fn leave_write(&self) {
        let mut gate = self.lock_gate();
        gate.writing -= 1;
        let wake = gate.writing == 0 && gate.freezes > 0;
        drop(gate);
        if wake {
            self.gate_changed.notify_all();
        }
    }

    fn detached_error(&self) -> Error {
        Error::Detached {
            volume_id: self.id.clone(),
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::InvalidParameter(format!(
                "range {offset}+{len} is outside the volume ({} bytes)",
                self.size
            ))),
        }
    }

    /// Reads `buf.len()` bytes at `offset` (any alignment).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let first = offset / SECTOR;
        let end = (offset + buf.len() as u64).div_ceil(SECTOR);
        let skip = (offset - first * SECTOR) as usize;
        if skip == 0 && buf.len() as u64 == (end - first) * SECTOR {
            // Aligned: decrypt straight into the caller's buffer.
            self.read_sectors(first, buf)
        } else {
            let mut scratch = vec![0u8; ((end - first) * SECTOR) as usize];
            let result = self.read_sectors(first, &mut scratch);
            if result.is_ok() {
                buf.copy_from_slice(&scratch[skip..skip + buf.len()]);
            }
            scratch.zeroize();
            result
        }
    }

    fn read_sectors(&self, first: u64, buf: &mut [u8]) -> Result<()> {
        if !self.is_attached() {
            return Err(self.detached_error());
        }
        self.file()?
            .read_exact_at(buf, DATA_OFFSET + first * SECTOR)
            .map_err(|e| Error::io(format!("read volume {}", self.id), e))?;
        let cipher = self.cipher.read().unwrap_or_else(|p| p.into_inner());
        match cipher.as_ref() {
            Some(cipher) => {
                cipher.decrypt_sectors(first, buf);
                Ok(())
            }
            None => {
                buf.zeroize();
                Err(self.detached_error())
            }
        }
    }

    /// Like [`Volume::write_at`], but a sector-aligned `data` is encrypted in place
    /// (its contents are ciphertext afterwards), saving a copy on the hot path.
    pub fn write_at_in_place(&self, offset: u64, data: &mut [u8], fua: bool) -> Result<()> {
        let aligned = offset.is_multiple_of(SECTOR) && data.len().is_multiple_of(SECTOR_SIZE);
        if !aligned || data.is_empty() {
            return self.write_at(offset, data, fua);
        }
        self.check_range(offset, data.len() as u64)?;
        if !self.is_attached() {
            return Err(self.detached_error());
        }
        self.encrypt_and_write(offset / SECTOR, data)?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes `data` at `offset` (any alignment). Partial sectors at either end are
    /// read, decrypted, merged and re-encrypted under a lock, so two unaligned
    /// writes to different bytes of one sector never lose each other's bytes.
    /// With `fua` the data is on stable storage when this returns.
    pub fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.check_range(offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        if !self.is_attached() {
            return Err(self.detached_error());
        }
        let first = offset / SECTOR;
        let end = (offset + data.len() as u64).div_ceil(SECTOR);
        let skip = (offset - first * SECTOR) as usize;
        let total = ((end - first) * SECTOR) as usize;
        let head_partial = skip != 0 || data.len() < SECTOR_SIZE;
        let tail_partial = !(skip + data.len()).is_multiple_of(SECTOR_SIZE);
        let mut buf = vec![0u8; total];
        let result = if !head_partial && !tail_partial {
            buf.copy_from_slice(data);
            self.encrypt_and_write(first, &mut buf)
        } else {
            // Lock the stripes of the edge sectors, in ascending order (no deadlock).
            let mut stripes = vec![
                (first as usize) % RMW_STRIPES,
                ((end - 1) as usize) % RMW_STRIPES,
            ];
            stripes.sort_unstable();
            stripes.dedup();
            let _guards: Vec<_> = stripes
                .iter()
                .map(|&s| self.rmw[s].lock().unwrap_or_else(|p| p.into_inner()))
                .collect();
            let mut result = Ok(());
            if head_partial {
                result = self.read_sectors(first, &mut buf[..SECTOR_SIZE]);
            }
            if result.is_ok() && tail_partial && (end - 1 != first || !head_partial) {
                result = self.read_sectors(end - 1, &mut buf[total - SECTOR_SIZE..]);
            }
            if result.is_ok() {
                buf[skip..skip + data.len()].copy_from_slice(data);
                result = self.encrypt_and_write(first, &mut buf);
            }
            result
        };
        buf.zeroize();
        result?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes zeros over `len` bytes at `offset`: encrypted zeros, so the range
    /// reads back as zeros (a hole would read back as the decryption of zeros).
    pub fn write_zeroes(&self, offset: u64, len: u64, fua: bool) -> Result<()> {
        self.check_range(offset, len)?;
        let zeros = vec![0u8; ZERO_CHUNK.min(len) as usize];
        let mut at = offset;
        while at < offset + len {
            let n = ZERO_CHUNK.min(offset + len - at);
            self.write_at(at, &zeros[..n as usize], false)?;
            at += n;
        }
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    fn encrypt_and_write(&self, first: u64, buf: &mut [u8]) -> Result<()> {
        // The whole encrypt-and-write is one write for a freeze: a frozen
        // volume's file never changes under a copy.
        self.enter_write();
        let result = self.encrypt_and_write_unfrozen(first, buf);
        self.leave_write();
        result
    }

    fn encrypt_and_write_unfrozen(&self, first: u64, buf: &mut [u8]) -> Result<()> {
        {
            let cipher = self.cipher.read().unwrap_or_else(|p| p.into_inner());
            match cipher.as_ref() {
                Some(cipher) => cipher.encrypt_sectors(first, buf),
                None => return Err(self.detached_error()),
            }
        }
        self.file()?
            .write_all_at(buf, DATA_OFFSET + first * SECTOR)
            .map_err(|e| Error::io(format!("write volume {}", self.id), e))
    }

    /// Makes every completed write durable (`fdatasync`). Through a descriptor
    /// opened after the writes too: Linux syncs the file's dirty data whichever
    /// descriptor asks, and reports a writeback error no descriptor has seen yet to
    /// the next one that syncs.
    pub fn flush(&self) -> Result<()> {
        self.file()?
            .sync_data()
            .map_err(|e| Error::io(format!("flush volume {}", self.id), e))
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn header(size: u64) -> VolumeHeader {
        VolumeHeader {
            volume_id: "vol-test".into(),
            size,
            key_arn: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            wrapped_key: vec![1, 2, 3],
            encryption_context: BTreeMap::new(),
        }
    }

    fn raw_key() -> Vec<u8> {
        (0..64u8)
            .map(|i| i.wrapping_mul(13).wrapping_add(1))
            .collect()
    }

    fn volume(dir: &Path, size: u64) -> Volume {
        let path = dir.join("v.img");
        let key = DataKey::from_slice(&mut raw_key()).unwrap();
        VolumeFile::create(&path, header(size), &key).unwrap();
        VolumeFile::open(&path)
            .unwrap()
            .unlock(DataKey::from_slice(&mut raw_key()).unwrap())
            .unwrap()
    }

    #[test]
    fn unaligned_writes_read_back_and_sit_encrypted_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let vol = volume(dir.path(), 64 * 4096);
        vol.write_zeroes(0, 64 * 4096, false).unwrap();
        let data: Vec<u8> = (0..10_000).map(|i| (i % 253) as u8).collect();
        vol.write_at(1000, &data, false).unwrap();
        vol.write_at(50_000, &data[..10], true).unwrap();
        let mut back = vec![0u8; 10_000];
        vol.read_at(1000, &mut back).unwrap();
        assert_eq!(back, data);
        let mut around = vec![0u8; 1000];
        vol.read_at(0, &mut around).unwrap();
        assert!(
            around.iter().all(|&b| b == 0),
            "bytes before an unaligned write stay zero"
        );
        vol.read_at(11_000, &mut around).unwrap();
        assert!(
            around.iter().all(|&b| b == 0),
            "bytes after an unaligned write stay zero"
        );
        // On disk: the sector is XTS ciphertext under the raw key, tweak = sector index.
        let mut disk = vec![0u8; 4096];
        std::fs::File::open(dir.path().join("v.img"))
            .unwrap()
            .read_exact_at(&mut disk, 4096 + 4096)
            .unwrap();
        assert!(!disk.windows(16).any(|w| w == &data[3096..3112]));
        XtsCipher::new(&DataKey::from_slice(&mut raw_key()).unwrap()).decrypt_sectors(1, &mut disk);
        assert_eq!(&disk[..], &data[3096..3096 + 4096]);
    }

    #[test]
    fn concurrent_unaligned_writes_to_one_sector_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let vol = std::sync::Arc::new(volume(dir.path(), 4 * 4096));
        vol.write_zeroes(0, 4 * 4096, false).unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let vol = vol.clone();
                std::thread::spawn(move || {
                    for round in 0..50u64 {
                        let at = 4096 + u64::from(t) * 512 + (round % 8) * 64;
                        vol.write_at(at, &[t + 1; 64], false).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut sector = vec![0u8; 4096];
        vol.read_at(4096, &mut sector).unwrap();
        for t in 0..8usize {
            assert!(
                sector[t * 512..t * 512 + 512]
                    .iter()
                    .all(|&b| b == t as u8 + 1),
                "stripe {t} lost writes"
            );
        }
    }

    #[test]
    fn a_frozen_volume_holds_writes_until_the_freeze_ends_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let vol = std::sync::Arc::new(volume(dir.path(), 4 * 4096));
        vol.write_at(0, &[1u8; 4096], false).unwrap();
        let freeze = vol.freeze_writes();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = {
            let vol = vol.clone();
            std::thread::spawn(move || {
                vol.write_at(0, &[2u8; 100], false).unwrap();
                done_tx.send(()).unwrap();
            })
        };
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "a write went through a freeze"
        );
        let mut buf = vec![0u8; 4096];
        vol.read_at(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 1), "reads go on, unchanged");
        drop(freeze);
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the write lands once the freeze ends");
        writer.join().unwrap();
        vol.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf[..101], &[[2u8; 100].as_slice(), &[1]].concat()[..]);
    }

    #[test]
    fn out_of_range_and_detached_io_fail_without_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let vol = volume(dir.path(), 8 * 4096);
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            vol.read_at(7 * 4096 + 1, &mut buf),
            Err(Error::InvalidParameter(_))
        ));
        assert!(matches!(
            vol.write_at(u64::MAX - 1, &buf, false),
            Err(Error::InvalidParameter(_))
        ));
        vol.write_at(0, &[7u8; 4096], false).unwrap();
        vol.detach();
        assert!(!vol.is_attached());
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            vol.read_at(0, &mut buf),
            Err(Error::Detached { .. })
        ));
        assert!(buf.iter().all(|&b| b != 7));
        assert!(matches!(
            vol.write_at(0, &[1u8; 10], false),
            Err(Error::Detached { .. })
        ));
    }

    /// This process's descriptors open on `path`.
    fn descriptors_on(path: &Path) -> usize {
        let target = std::fs::canonicalize(path).unwrap();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == target))
            .count()
    }

    #[test]
    fn the_file_is_open_only_while_kept_open_and_must_stay_the_unlocked_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.img");
        let vol = volume(dir.path(), 8 * 4096);
        assert_eq!(descriptors_on(&path), 0, "unlocked, unused: closed");
        // Unkept I/O opens the file for the call only.
        vol.write_at(0, &[7u8; 4096], true).unwrap();
        assert_eq!(descriptors_on(&path), 0);
        {
            let _a = vol.keep_open();
            let _b = vol.keep_open();
            assert_eq!(
                descriptors_on(&path),
                0,
                "opened by the first I/O, not before"
            );
            let mut buf = vec![0u8; 4096];
            vol.read_at(0, &mut buf).unwrap();
            assert_eq!(buf, [7u8; 4096]);
            vol.write_at(4096, &[8u8; 100], false).unwrap();
            assert_eq!(descriptors_on(&path), 1, "kept open: one descriptor");
            drop(_a);
            vol.flush().unwrap();
            assert_eq!(descriptors_on(&path), 1, "still kept by one");
        }
        assert_eq!(descriptors_on(&path), 0, "the last keeper closed it");
        // Detach closes it even while kept, and refuses I/O at once.
        let keep = vol.keep_open();
        vol.read_at(0, &mut [0u8; 10]).unwrap();
        assert_eq!(descriptors_on(&path), 1);
        vol.detach();
        assert_eq!(descriptors_on(&path), 0, "detached: closed");
        assert!(matches!(
            vol.read_at(0, &mut [0u8; 10]),
            Err(Error::Detached { .. })
        ));
        assert_eq!(descriptors_on(&path), 0, "refused without opening");
        vol.reattach(DataKey::from_slice(&mut raw_key()).unwrap())
            .unwrap();
        vol.read_at(0, &mut [0u8; 10]).unwrap();
        assert_eq!(descriptors_on(&path), 1, "reattached and kept: open again");
        drop(keep);
        // Another file put at the path (same key, same header) is not this volume's file.
        let other = dir.path().join("other.img");
        let key = DataKey::from_slice(&mut raw_key()).unwrap();
        VolumeFile::create(&other, header(8 * 4096), &key).unwrap();
        std::fs::rename(&other, &path).unwrap();
        let read = vol.read_at(0, &mut [0u8; 10]);
        assert!(
            matches!(&read, Err(Error::Io { source, .. }) if source.to_string().contains("no longer names")),
            "{read:?}"
        );
        assert!(matches!(
            vol.write_at(0, &[1u8; 10], false),
            Err(Error::Io { .. })
        ));
        assert_eq!(
            std::fs::read(&path).unwrap()[4096..4106],
            [0u8; 10],
            "nothing written to the swapped-in file"
        );
        assert_eq!(descriptors_on(&path), 0);
    }

    #[test]
    fn wrong_key_corrupt_header_or_truncated_file_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.img");
        let key = DataKey::from_slice(&mut raw_key()).unwrap();
        VolumeFile::create(&path, header(8 * 4096), &key).unwrap();
        assert!(matches!(
            VolumeFile::create(&path, header(4096), &key),
            Err(Error::AlreadyExists { .. })
        ));
        let before = std::fs::read(&path).unwrap();
        let other = DataKey::generate().unwrap();
        assert!(matches!(
            VolumeFile::open(&path).unwrap().unlock(other),
            Err(Error::HeaderMacMismatch)
        ));
        // Grow the volume in the header: structurally fine, MAC catches it.
        let mut grown = before.clone();
        grown[24..32].copy_from_slice(&(4u64 * 4096).to_le_bytes());
        std::fs::write(&path, &grown).unwrap();
        let unlocked = VolumeFile::open(&path)
            .unwrap()
            .unlock(DataKey::from_slice(&mut raw_key()).unwrap());
        assert!(matches!(unlocked, Err(Error::HeaderMacMismatch)));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            grown,
            "a refused unlock writes nothing"
        );
        std::fs::write(&path, &before[..4096 + 100]).unwrap();
        assert!(matches!(
            VolumeFile::open(&path),
            Err(Error::TruncatedData { .. })
        ));
        std::fs::write(&path, &before[..2000]).unwrap();
        assert!(matches!(
            VolumeFile::open(&path),
            Err(Error::TruncatedHeader { .. })
        ));
    }
}
