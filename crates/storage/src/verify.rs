//! The verification scan: what the console shows about one cluster's storage.
//!
//! Given the KMS key ARN the cluster must use, the cluster id, the volume files
//! of the disk classes and the object directories of the object classes, the
//! scan reports per storage class whether everything in it is encrypted under
//! that key and bound to its place, the key ARNs it saw, the counts, and every
//! offender by name with the reason.
//!
//! What is checked, per item:
//! - **volume** (`engine-disk`, `search-disk`): the header parses (magic,
//!   version, structure); it names the expected key ARN; its encryption context
//!   names the volume id, the cluster and the class; KMS `Decrypt` of the
//!   wrapped key succeeds (through [`KeyService`], with the scanner's own
//!   identity, no grant); the header MAC holds under the unwrapped key; and a
//!   few sectors spread over the volume are read and decrypted. XTS has no
//!   integrity: any 4096 bytes "decrypt" under any key, so the sampled reads
//!   prove only that the data area is readable — the proof that the key is this
//!   volume's is the header MAC. The volume is opened read-only and its key is
//!   wiped when the check ends.
//! - **object** (`documents`, `backups`): every file under the directory is an
//!   ESDK v2 message (its header parses with the envelope crate's parser);
//!   every encrypted data key in it is under provider `aws-kms` and names the
//!   expected key ARN (an extra key under another ARN would let that key's
//!   holder read the object); its stored encryption context names the cluster
//!   ([`CLUSTER_CONTEXT_KEY`]), the class ([`CLASS_CONTEXT_KEY`]) and the
//!   object's own key ([`OBJECT_CONTEXT_KEY`]: its path under the directory),
//!   so an object copied to another cluster, class or name is caught.
//!   From the header alone this proves the format, the key and the place, not
//!   the integrity of the bytes: [`scan_with_object_decrypts`] also decrypts a
//!   few objects per class in full through an ESDK client (the KMS `Decrypt`,
//!   key commitment, header tag and every frame tag, with the expected context
//!   required), discarding the plaintext.
//!
//! Anything else is an offender: a plaintext file, a file in another format, a
//! foreign key, a foreign context, a symlink or other non-regular file.
//!
//! Object directories are read as `object_store`'s local layout: one file per
//! object under the prefix (for the objects module's stores, the class's
//! directory is `<root>/<cluster>/<class>`), nested directories for `/` in
//! object keys. Its in-progress uploads are files named `<object>#<digits>` (object_store's
//! `staged_upload_path`, the same rule its own listing uses to hide them);
//! they are counted apart as staged uploads, not as objects, and still must
//! begin like an ESDK v2 message (a short or empty one is allowed: the upload
//! may be mid-way). A directory that does not exist holds no objects, as a
//! prefix with nothing under it lists nothing in `object_store`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use keyward_envelope::header::{Header, ParseError};
use keyward_envelope::{Client, DecryptOptions, KmsFailure, KmsKeyring};

use crate::error::{Error, Result};
use crate::vocab::VOLUME_ID_CONTEXT_KEY;
use crate::volume::kms::KeyService;
use crate::volume::xts::SECTOR_SIZE;
use crate::volume::VolumeFile;

pub use crate::vocab::{StorageClass, CLASS_CONTEXT_KEY, CLUSTER_CONTEXT_KEY, OBJECT_CONTEXT_KEY};
/// The ESDK key provider id of AWS KMS (the envelope crate's KMS keyring writes it).
const AWS_KMS_PROVIDER: &str = "aws-kms";
/// Sectors read from each volume unless the request says otherwise.
pub const DEFAULT_SAMPLED_SECTORS: usize = 4;
/// A message header larger than this is not one we would have written
/// (16 keys of three 64 KiB fields plus a 64 KiB context stay below it).
const MAX_HEADER_BYTES: usize = 4 << 20;

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The ARN every item must be encrypted under.
    pub key_arn: String,
    pub cluster_id: String,
    /// Volume files, each with its (disk) class.
    pub volumes: Vec<(StorageClass, PathBuf)>,
    /// Object directories (prefixes), each with its (object) class.
    pub object_dirs: Vec<(StorageClass, PathBuf)>,
    /// Sectors read from each volume (first and last included); at least 1.
    pub sampled_sectors: usize,
    /// Objects decrypted in full per object directory by
    /// [`scan_with_object_decrypts`] (spread over the directory's objects).
    pub sampled_objects: usize,
}

/// Why an item is an offender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Not in an encrypted format we write (plaintext or anything else).
    NotEncrypted(String),
    /// Starts like a volume but its header does not parse.
    BadVolumeHeader(String),
    /// Encrypted under (or also under) a key other than the expected one.
    ForeignKey {
        seen: Vec<String>,
    },
    /// The encryption context does not bind it to this cluster and class.
    ForeignContext(String),
    /// KMS would not unwrap the volume key.
    KmsRefused {
        failure: KmsFailure,
    },
    /// The unwrapped key does not authenticate the volume header.
    HeaderMacMismatch,
    /// A sampled sector could not be read.
    SampleReadFailed(String),
    /// A sampled object did not decrypt under the expected key and context.
    DecryptFailed(String),
    /// A symlink, socket, device or fifo where only object files belong.
    NotARegularFile,
    Unreadable(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotEncrypted(why) => write!(f, "not encrypted: {why}"),
            Reason::BadVolumeHeader(why) => write!(f, "bad volume header: {why}"),
            Reason::ForeignKey { seen } => {
                write!(f, "encrypted under a foreign key: {}", seen.join(", "))
            }
            Reason::ForeignContext(why) => write!(f, "foreign encryption context: {why}"),
            Reason::KmsRefused { failure } => {
                write!(f, "KMS Decrypt of the volume key failed: {failure}")
            }
            Reason::HeaderMacMismatch => {
                f.write_str("header MAC mismatch: the header was changed or the key is not its own")
            }
            Reason::SampleReadFailed(why) => write!(f, "sampled sector read failed: {why}"),
            Reason::DecryptFailed(why) => write!(f, "sampled decrypt failed: {why}"),
            Reason::NotARegularFile => f.write_str("not a regular file"),
            Reason::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// One item that fails the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offender {
    /// The object key (path under its directory, `/`-separated) or the volume file's name.
    pub name: String,
    pub path: PathBuf,
    pub reason: Reason,
}

/// The scan's answer for one storage class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassReport {
    pub class: StorageClass,
    /// True when nothing in the class is an offender.
    pub encrypted: bool,
    /// Every KMS key ARN seen in the class (foreign ones included; a non-KMS
    /// key provider shows as `provider:<id>`).
    pub key_arns: BTreeSet<String>,
    pub volumes: u64,
    pub objects: u64,
    /// object_store upload files in progress (not objects yet).
    pub staged_uploads: u64,
    /// Objects decrypted in full (by [`scan_with_object_decrypts`]).
    pub objects_decrypted: u64,
    pub offenders: Vec<Offender>,
}

impl ClassReport {
    fn new(class: StorageClass) -> ClassReport {
        ClassReport {
            class,
            encrypted: true,
            key_arns: BTreeSet::new(),
            volumes: 0,
            objects: 0,
            staged_uploads: 0,
            objects_decrypted: 0,
            offenders: Vec::new(),
        }
    }

    fn offend(&mut self, name: String, path: &Path, reason: Reason) {
        self.offenders.push(Offender {
            name,
            path: path.to_owned(),
            reason,
        });
    }
}

/// The whole scan's answer: one report per class named in the request, in
/// [`StorageClass::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub key_arn: String,
    pub cluster_id: String,
    pub classes: Vec<ClassReport>,
}

impl ScanReport {
    pub fn class(&self, class: StorageClass) -> Option<&ClassReport> {
        self.classes.iter().find(|c| c.class == class)
    }

    /// True when no class has an offender.
    pub fn all_encrypted(&self) -> bool {
        self.classes.iter().all(|c| c.encrypted)
    }

    pub fn offenders(&self) -> impl Iterator<Item = &Offender> {
        self.classes.iter().flat_map(|c| c.offenders.iter())
    }
}

/// Scans a cluster's storage. `kms` unwraps volume keys (its identity needs
/// `kms:Decrypt` on the key). Errors only for a bad request or a failure that
/// leaves nothing provable (a directory that cannot be listed); everything
/// wrong with an item is an [`Offender`].
pub async fn scan<K: KeyService>(kms: &K, request: &ScanRequest) -> Result<ScanReport> {
    scan_inner(kms, None, request).await
}

/// [`scan`], and also decrypts `request.sampled_objects` objects of each
/// object directory in full with `esdk` (whose keyring must be able to
/// `Decrypt` under the expected key), requiring the cluster, class and object
/// pairs in their context. The plaintext is discarded.
pub async fn scan_with_object_decrypts<K: KeyService>(
    kms: &K,
    esdk: &Client<KmsKeyring>,
    request: &ScanRequest,
) -> Result<ScanReport> {
    scan_inner(kms, Some(esdk), request).await
}

async fn scan_inner<K: KeyService>(
    kms: &K,
    esdk: Option<&Client<KmsKeyring>>,
    request: &ScanRequest,
) -> Result<ScanReport> {
    check_request(request)?;
    let mut classes: BTreeMap<StorageClass, ClassReport> = BTreeMap::new();
    for (class, _) in request.volumes.iter().chain(&request.object_dirs) {
        classes
            .entry(*class)
            .or_insert_with(|| ClassReport::new(*class));
    }
    for (class, path) in &request.volumes {
        let report = classes.get_mut(class).expect("inserted above");
        scan_volume(kms, request, *class, path, report).await?;
    }
    for (class, dir) in &request.object_dirs {
        let report = classes.get_mut(class).expect("inserted above");
        let (dir, expected, cluster, class) = (
            dir.clone(),
            request.key_arn.clone(),
            request.cluster_id.clone(),
            *class,
        );
        let mut taken = std::mem::replace(report, ClassReport::new(class));
        let passed;
        (taken, passed) = blocking(move || {
            let checker = ObjectChecker {
                expected_arn: &expected,
                cluster: &cluster,
                class,
                root: &dir,
            };
            let mut passed = Vec::new();
            checker.walk(&dir, &mut taken, &mut passed)?;
            Ok((taken, passed))
        })
        .await?;
        *report = taken;
        if let Some(esdk) = esdk {
            decrypt_samples(esdk, request, class, &passed, report).await;
        }
    }
    let classes = classes
        .into_values()
        .map(|mut c| {
            c.encrypted = c.offenders.is_empty();
            c
        })
        .collect();
    Ok(ScanReport {
        key_arn: request.key_arn.clone(),
        cluster_id: request.cluster_id.clone(),
        classes,
    })
}

fn check_request(request: &ScanRequest) -> Result<()> {
    if !request.key_arn.starts_with("arn:") {
        return Err(Error::InvalidParameter(format!(
            "the expected key must be a key ARN, not {:?}",
            request.key_arn
        )));
    }
    if request.cluster_id.is_empty() {
        return Err(Error::InvalidParameter("the cluster id is empty".into()));
    }
    if request.sampled_sectors == 0 {
        return Err(Error::InvalidParameter(
            "at least one sector of each volume must be sampled".into(),
        ));
    }
    if let Some((class, _)) = request.volumes.iter().find(|(c, _)| !c.is_volume_class()) {
        return Err(Error::InvalidParameter(format!(
            "{class} is an object class; volumes are engine-disk or search-disk"
        )));
    }
    if let Some((class, _)) = request
        .object_dirs
        .iter()
        .find(|(c, _)| c.is_volume_class())
    {
        return Err(Error::InvalidParameter(format!(
            "{class} is a disk class; object directories are documents or backups"
        )));
    }
    Ok(())
}

/// Checks that `context` binds an item to `cluster` and `class`; says what is wrong otherwise.
fn place_mismatch(
    context: &BTreeMap<String, String>,
    cluster: &str,
    class: StorageClass,
) -> Option<String> {
    let mut wrong = Vec::new();
    for (key, want) in [
        (CLUSTER_CONTEXT_KEY, cluster),
        (CLASS_CONTEXT_KEY, class.as_str()),
    ] {
        match context.get(key) {
            Some(have) if have == want => {}
            Some(have) => wrong.push(format!("{key} is {have:?}, expected {want:?}")),
            None => wrong.push(format!("{key} is missing, expected {want:?}")),
        }
    }
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

async fn scan_volume<K: KeyService>(
    kms: &K,
    request: &ScanRequest,
    class: StorageClass,
    path: &Path,
    report: &mut ClassReport,
) -> Result<()> {
    report.volumes += 1;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let owned = path.to_owned();
    let file = match blocking(move || Ok(VolumeFile::open_read_only(&owned))).await? {
        Ok(file) => file,
        Err(error @ Error::NotAVolume { .. }) => {
            report.offend(name, path, Reason::NotEncrypted(error.to_string()));
            return Ok(());
        }
        Err(error @ Error::Io { .. }) => {
            report.offend(name, path, Reason::Unreadable(error.to_string()));
            return Ok(());
        }
        Err(error) => {
            report.offend(name, path, Reason::BadVolumeHeader(error.to_string()));
            return Ok(());
        }
    };
    let header = file.header().clone();
    report.key_arns.insert(header.key_arn.clone());
    if header.key_arn != request.key_arn {
        let seen = vec![header.key_arn.clone()];
        report.offend(name, path, Reason::ForeignKey { seen });
        return Ok(());
    }
    let mut wrong = Vec::new();
    if header.encryption_context.get(VOLUME_ID_CONTEXT_KEY) != Some(&header.volume_id) {
        wrong.push(format!(
            "{VOLUME_ID_CONTEXT_KEY} does not name the volume {:?}",
            header.volume_id
        ));
    }
    wrong.extend(place_mismatch(
        &header.encryption_context,
        &request.cluster_id,
        class,
    ));
    if !wrong.is_empty() {
        report.offend(name, path, Reason::ForeignContext(wrong.join("; ")));
        return Ok(());
    }
    let key = match kms
        .decrypt(
            &header.key_arn,
            &header.wrapped_key,
            &header.encryption_context,
            None,
        )
        .await
    {
        Ok(key) => key,
        Err(Error::Kms { failure, .. }) => {
            report.offend(name, path, Reason::KmsRefused { failure });
            return Ok(());
        }
        Err(other) => return Err(other),
    };
    let samples = request.sampled_sectors;
    let outcome = blocking(move || {
        let volume = match file.unlock(key) {
            Ok(volume) => volume,
            Err(Error::HeaderMacMismatch) => return Ok(Some(Reason::HeaderMacMismatch)),
            Err(other) => return Ok(Some(Reason::BadVolumeHeader(other.to_string()))),
        };
        let sectors = volume.size() / SECTOR_SIZE as u64;
        let _open = volume.keep_open();
        let mut buf = zeroize::Zeroizing::new(vec![0u8; SECTOR_SIZE]);
        for sector in sample_sectors(sectors, samples) {
            if let Err(error) = volume.read_at(sector * SECTOR_SIZE as u64, &mut buf) {
                return Ok(Some(Reason::SampleReadFailed(format!(
                    "sector {sector}: {error}"
                ))));
            }
        }
        // Dropping the volume wipes its key.
        Ok(None)
    })
    .await?;
    if let Some(reason) = outcome {
        report.offend(name, path, reason);
    }
    Ok(())
}

/// `n` indices (sectors, or objects) spread evenly from the first to the last of `sectors`.
fn sample_sectors(sectors: u64, n: usize) -> Vec<u64> {
    if sectors == 0 {
        return Vec::new();
    }
    let n = (n as u64).min(sectors);
    if n == 1 {
        return vec![0];
    }
    (0..n).map(|i| i * (sectors - 1) / (n - 1)).collect()
}

struct ObjectChecker<'a> {
    expected_arn: &'a str,
    cluster: &'a str,
    class: StorageClass,
    root: &'a Path,
}

impl ObjectChecker<'_> {
    /// Checks every file under `dir`; objects that pass go to `passed` (name, path).
    fn walk(
        &self,
        dir: &Path,
        report: &mut ClassReport,
        passed: &mut Vec<(String, PathBuf)>,
    ) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == self.root => {
                return Ok(());
            }
            Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
            paths.push(entry.path());
        }
        // A stable order, so reports compare from run to run.
        paths.sort();
        for path in paths {
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
            if meta.is_dir() {
                self.walk(&path, report, passed)?;
                continue;
            }
            let name = self.object_name(&path);
            let staged = is_staged_upload(&path);
            if staged {
                report.staged_uploads += 1;
            } else {
                report.objects += 1;
            }
            if !meta.is_file() {
                report.offend(name, &path, Reason::NotARegularFile);
                continue;
            }
            // A staged upload will become the object named without its `#<digits>`.
            let key = match name.rsplit_once('#') {
                Some((key, _)) if staged => key,
                _ => name.as_str(),
            };
            match self.check_object(&path, key, staged, report) {
                Some(reason) => report.offend(name, &path, reason),
                None if !staged => passed.push((name, path)),
                None => {}
            }
        }
        Ok(())
    }

    fn object_name(&self, path: &Path) -> String {
        let relative = path.strip_prefix(self.root).unwrap_or(path);
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    fn check_object(
        &self,
        path: &Path,
        name: &str,
        staged: bool,
        report: &mut ClassReport,
    ) -> Option<Reason> {
        let header = match read_message_header(path) {
            Ok(Some(header)) => header,
            Ok(None) if staged => return None,
            Ok(None) => {
                return Some(Reason::NotEncrypted(
                    "truncated or empty: not a whole ESDK v2 message header".into(),
                ))
            }
            Err(reason) => return Some(reason),
        };
        let mut seen = Vec::new();
        let mut foreign = false;
        for edk in &header.encrypted_data_keys {
            let arn = if edk.provider_id == AWS_KMS_PROVIDER {
                String::from_utf8_lossy(&edk.provider_info).into_owned()
            } else {
                format!("provider:{}", edk.provider_id)
            };
            foreign |= arn != self.expected_arn;
            report.key_arns.insert(arn.clone());
            seen.push(arn);
        }
        if foreign {
            return Some(Reason::ForeignKey { seen });
        }
        let mut wrong: Vec<String> = place_mismatch(&header.context, self.cluster, self.class)
            .into_iter()
            .collect();
        match header.context.get(OBJECT_CONTEXT_KEY) {
            Some(key) if *key == name => {}
            Some(key) => wrong.push(format!(
                "{OBJECT_CONTEXT_KEY} is {key:?}, expected {name:?}"
            )),
            None => wrong.push(format!(
                "{OBJECT_CONTEXT_KEY} is missing, expected {name:?}"
            )),
        }
        (!wrong.is_empty()).then(|| Reason::ForeignContext(wrong.join("; ")))
    }
}

/// Decrypts a spread of the objects that passed the header checks, in full.
async fn decrypt_samples(
    esdk: &Client<KmsKeyring>,
    request: &ScanRequest,
    class: StorageClass,
    passed: &[(String, PathBuf)],
    report: &mut ClassReport,
) {
    let picks = sample_sectors(passed.len() as u64, request.sampled_objects);
    for pick in picks {
        let (name, path) = &passed[pick as usize];
        let options = DecryptOptions {
            context: [
                (CLUSTER_CONTEXT_KEY.to_owned(), request.cluster_id.clone()),
                (CLASS_CONTEXT_KEY.to_owned(), class.as_str().to_owned()),
                (OBJECT_CONTEXT_KEY.to_owned(), name.clone()),
            ]
            .into(),
            required_keys: Vec::new(),
        };
        let outcome = match tokio::fs::File::open(path).await {
            Ok(mut file) => esdk
                .decrypt_async(&options, &mut file, &mut tokio::io::sink())
                .await
                .map(drop)
                .map_err(|e| Reason::DecryptFailed(e.to_string())),
            Err(e) => Err(Reason::Unreadable(e.to_string())),
        };
        match outcome {
            Ok(()) => report.objects_decrypted += 1,
            Err(reason) => report.offend(name.clone(), path, reason),
        }
    }
}

/// object_store's staging files are `<name>#<digits>`: the same test as its
/// local listing's `is_valid_file_path`.
pub(crate) fn is_staged_upload(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    match name.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Reads the ESDK header at the start of `path`. `Ok(None)`: the file ends
/// before the header does (empty included). `Err`: not an ESDK v2 message.
fn read_message_header(path: &Path) -> std::result::Result<Option<Header>, Reason> {
    let mut file = File::open(path).map_err(|e| Reason::Unreadable(e.to_string()))?;
    let max_keys = keyward_envelope::Config::default().max_encrypted_data_keys;
    let mut buf = Vec::new();
    let mut want = 4096usize;
    loop {
        let have = buf.len();
        buf.resize(want, 0);
        let mut filled = have;
        while filled < want {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Reason::Unreadable(e.to_string())),
            }
        }
        buf.truncate(filled);
        let at_eof = filled < want;
        match Header::parse(&buf, max_keys) {
            Ok((header, _)) => return Ok(Some(header)),
            Err(ParseError::Incomplete(needed)) => {
                if at_eof {
                    // A short file of plaintext that happens to start with 0x02
                    // lands here too; the caller calls it truncated, not encrypted.
                    return Ok(None);
                }
                if needed > MAX_HEADER_BYTES {
                    return Err(Reason::NotEncrypted(format!(
                        "an ESDK header of {needed} bytes is larger than any we write"
                    )));
                }
                want = needed.max(want * 2).min(MAX_HEADER_BYTES);
            }
            Err(ParseError::Version(version)) => {
                return Err(Reason::NotEncrypted(if version == 0x01 {
                    "ESDK message format version 1 (only v2 with key commitment is accepted)"
                        .to_string()
                } else {
                    "not an ESDK v2 message (the first byte is not the version 0x02)".to_string()
                }))
            }
            Err(ParseError::TooManyKeys) => {
                return Err(Reason::NotEncrypted(format!(
                    "an ESDK message with more than {max_keys} encrypted data keys"
                )))
            }
            Err(ParseError::Invalid) => {
                return Err(Reason::NotEncrypted(
                    "not an ESDK v2 message (its header does not parse)".into(),
                ))
            }
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("blocking task", std::io::Error::other(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_upload_names_follow_object_store() {
        assert!(is_staged_upload(Path::new("a/b.bin#1")));
        assert!(is_staged_upload(Path::new("b#12345")));
        assert!(!is_staged_upload(Path::new("b#")));
        assert!(!is_staged_upload(Path::new("b#1x")));
        assert!(!is_staged_upload(Path::new("b.bin")));
    }

    #[test]
    fn samples_cover_first_and_last_sector() {
        assert_eq!(sample_sectors(100, 4), vec![0, 33, 66, 99]);
        assert_eq!(sample_sectors(2, 4), vec![0, 1]);
        assert_eq!(sample_sectors(7, 1), vec![0]);
        assert!(sample_sectors(0, 4).is_empty());
    }

    #[test]
    fn place_mismatch_names_each_wrong_pair() {
        let context: BTreeMap<String, String> = [
            (CLUSTER_CONTEXT_KEY.to_string(), "c-2".to_string()),
            ("other".to_string(), "x".to_string()),
        ]
        .into();
        let why = place_mismatch(&context, "c-1", StorageClass::Documents).unwrap();
        assert!(
            why.contains("keyward:cluster is \"c-2\", expected \"c-1\""),
            "{why}"
        );
        assert!(why.contains("keyward:class is missing"), "{why}");
        let good: BTreeMap<String, String> = [
            (CLUSTER_CONTEXT_KEY.to_string(), "c-1".to_string()),
            (CLASS_CONTEXT_KEY.to_string(), "documents".to_string()),
        ]
        .into();
        assert_eq!(place_mismatch(&good, "c-1", StorageClass::Documents), None);
    }
}
