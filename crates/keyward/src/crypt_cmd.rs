//! `keyward encrypt` / `keyward decrypt`: files as AWS Encryption SDK v2 messages.
//!
//! The messages open with the official `aws-encryption-cli` and the same key:
//! `aws-encryption-cli --decrypt -i F -o OUT --wrapping-keys key=<ARN>
//!  --commitment-policy require-encrypt-require-decrypt -S`.
//! Output goes to `<output>.partial` and is renamed only on success, so a
//! refused or interrupted message never leaves a plaintext that looks complete.

use std::{
    io::{IsTerminal, Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use clap::Args;
use keyward_envelope::{
    Client, Config, DecryptOptions, EncryptOptions, EncryptionContext, KmsKeyring, Suite,
};

/// Inputs at least this large get a progress bar (on a terminal only).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

#[derive(Args)]
pub struct EncryptArgs {
    /// ARN of the KMS key that generates the data key.
    #[arg(long, env = "KEYWARD_KEY_ARN")]
    key_arn: String,
    /// Encryption context pair KEY=VALUE, bound to the message (repeatable).
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Input file, or `-` for stdin.
    #[arg(short, long, default_value = "-")]
    input: PathBuf,
    /// Output file, or `-` for stdout.
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// KMS endpoint (else the AWS default chain: AWS_ENDPOINT_URL_KMS, config, the region's endpoint).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = keyward_envelope::DEFAULT_FRAME_LENGTH)]
    frame_length: u32,
    /// Algorithm suite: 0478 (default) or 0578 (adds an ECDSA P-384 signature).
    #[arg(long, default_value = "0478", value_parser = ["0478", "0578"])]
    suite: String,
}

#[derive(Args)]
pub struct DecryptArgs {
    /// ARN of a KMS key that may decrypt (repeatable); no other key is tried.
    #[arg(long, env = "KEYWARD_KEY_ARN", required = true)]
    key_arn: Vec<String>,
    /// Encryption context pair KEY=VALUE the message must carry (repeatable).
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Input file, or `-` for stdin.
    #[arg(short, long, default_value = "-")]
    input: PathBuf,
    /// Output file, or `-` for stdout.
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// KMS endpoint (else the AWS default chain).
    #[arg(long)]
    endpoint_url: Option<String>,
}

fn parse_context(pairs: &[String]) -> anyhow::Result<EncryptionContext> {
    let mut context = EncryptionContext::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--context {pair:?} is not KEY=VALUE; write for example --context cluster=c-123");
        };
        if key.is_empty() {
            bail!("--context {pair:?} has an empty key; write for example --context cluster=c-123");
        }
        if context.insert(key.to_owned(), value.to_owned()).is_some() {
            bail!("--context key {key:?} is given twice; give each key once");
        }
    }
    Ok(context)
}

/// The KMS client. A key ARN names its region (`arn:aws:kms:REGION:...`): the
/// client talks to that region, as the ESDK's KMS keyring does; otherwise the
/// AWS default chain decides.
async fn kms_client(endpoint_url: Option<&str>, key_arn: &str) -> aws_sdk_kms::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let region = key_arn
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|r| !r.is_empty());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_kms::Client::new(&loader.load().await)
}

/// Says what to do next for each failure a user can fix.
fn explain(error: keyward_envelope::Error, endpoint: Option<&str>) -> anyhow::Error {
    use keyward_envelope::Error as E;
    use keyward_envelope::KmsErrorCode as C;
    let hint = match &error {
        E::Kms {
            failure, key_id, ..
        } => match failure.code() {
            Some(C::AccessDeniedException) => format!(
                "the key policy of {key_id} does not let these credentials use it: allow kms:GenerateDataKey* and \
                 kms:Decrypt for your principal, or use other credentials"
            ),
            Some(C::DisabledException) => format!("the key is disabled: enable it with `aws kms enable-key --key-id {key_id}`"),
            Some(C::KMSInvalidStateException) => format!(
                "the key cannot be used in its state (pending deletion?): `aws kms cancel-key-deletion --key-id \
                 {key_id}` then `aws kms enable-key --key-id {key_id}`"
            ),
            Some(C::NotFoundException) => "no such key: check the key ARN and that the region matches it".into(),
            Some(C::UnrecognizedClientException | C::InvalidSignatureException) => {
                "the KMS does not accept these credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY".into()
            }
            _ => match endpoint {
                Some(url) => format!("check that the KMS at {url} is running and reachable"),
                None => "check the network, the region and --endpoint-url".into(),
            },
        },
        E::Decrypt => "check that --key-arn is the key the message was encrypted under, that every --context pair \
                       matches the message, and that the file is complete and unaltered"
            .into(),
        E::UnsupportedVersion(_) => "decrypt it with the AWS Encryption CLI's legacy commitment policy".into(),
        E::Io(_) => "check the input and output paths and free space".into(),
        _ => String::new(),
    };
    if hint.is_empty() {
        anyhow::Error::new(error)
    } else {
        anyhow::Error::new(error).context(hint)
    }
}

type Reader = Box<dyn Read + Send>;

/// Opens the input: a file (with its length, for the progress bar and the
/// cache) or stdin. The bytes move through blocking `std::io` on a blocking
/// thread: one `read` and one `write` per frame, no async file shim between.
fn open_input(path: &Path) -> anyhow::Result<(Reader, Option<u64>)> {
    if path == Path::new("-") {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the input {}: check the path", path.display()))?;
    let len = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    Ok((Box::new(file), len))
}

/// The output: stdout, or `<path>.partial` renamed to `<path>` by [`Output::commit`].
struct Output {
    writer: Box<dyn Write + Send>,
    paths: Option<(PathBuf, PathBuf)>,
}

impl Output {
    fn open(path: &Path) -> anyhow::Result<Output> {
        if path == Path::new("-") {
            return Ok(Output {
                writer: Box::new(std::io::stdout()),
                paths: None,
            });
        }
        // Only a regular file (or a new path) is written aside and renamed into
        // place; a device, pipe or symlink (`-o /dev/null`, a FIFO) is written
        // to directly, never replaced.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_file() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("cannot open {} for writing", path.display()))?;
                return Ok(Output {
                    writer: Box::new(file),
                    paths: None,
                });
            }
            _ => {}
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = std::fs::File::create(&partial).with_context(|| {
            format!(
                "cannot create {}: check the directory exists and is writable",
                partial.display()
            )
        })?;
        Ok(Output {
            writer: Box::new(file),
            paths: Some((partial, path.into())),
        })
    }

    fn commit(mut self) -> anyhow::Result<()> {
        self.writer.flush()?;
        if let Some((partial, path)) = self.paths.take() {
            std::fs::rename(&partial, &path)
                .with_context(|| format!("cannot rename to {}", path.display()))?;
        }
        Ok(())
    }

    fn abandon(self) {
        if let Some((partial, _)) = &self.paths {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// Counts bytes read into a progress bar.
struct Progress<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn with_progress(reader: Reader, len: Option<u64>) -> (Reader, Option<indicatif::ProgressBar>) {
    match len {
        Some(len) if len >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal() => {
            let bar = indicatif::ProgressBar::new(len);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            (
                Box::new(Progress {
                    inner: reader,
                    bar: bar.clone(),
                }),
                Some(bar),
            )
        }
        _ => (reader, None),
    }
}

/// Runs the body copy on a blocking thread, then keeps or removes the output.
async fn finish(
    work: impl FnOnce(&mut Reader, &mut Box<dyn Write + Send>) -> keyward_envelope::Result<u64>
        + Send
        + 'static,
    mut reader: Reader,
    mut output: Output,
    bar: Option<indicatif::ProgressBar>,
    endpoint: Option<String>,
) -> anyhow::Result<()> {
    let (result, output) = tokio::task::spawn_blocking(move || {
        let result = work(&mut reader, &mut output.writer);
        (result, output)
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(_) => output.commit(),
        Err(e) if quiet_broken_pipe(&e) => Ok(()),
        Err(e) => {
            output.abandon();
            Err(explain(e, endpoint.as_deref()))
        }
    }
}

/// A closed stdout (`keyward decrypt ... | head`) is not an error worth a message.
fn quiet_broken_pipe(error: &keyward_envelope::Error) -> bool {
    matches!(error, keyward_envelope::Error::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
}

pub async fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let context = parse_context(&args.context)?;
    let suite = match args.suite.as_str() {
        "0578" => Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
        _ => Suite::Aes256GcmHkdfSha512Commit,
    };
    let config = Config {
        suite,
        frame_length: args.frame_length,
        ..Config::default()
    };
    let (reader, len) = open_input(&args.input)?;
    let kms = kms_client(args.endpoint_url.as_deref(), &args.key_arn).await;
    let client = Client::new(KmsKeyring::new(kms, args.key_arn.clone()), config).map_err(|e| {
        anyhow::Error::new(e).context("choose a --frame-length between 1 and 64 MiB")
    })?;
    let (reader, bar) = with_progress(reader, len);
    let options = EncryptOptions {
        plaintext_length: len,
        ..Default::default()
    };
    let encryption = client
        .begin_encrypt(&context, &options)
        .await
        .map_err(|e| explain(e, args.endpoint_url.as_deref()))?;
    let output = Output::open(&args.output)?;
    finish(
        move |r, w| encryption.write_sync(r, w),
        reader,
        output,
        bar,
        args.endpoint_url,
    )
    .await
}

pub async fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let context = parse_context(&args.context)?;
    let (reader, len) = open_input(&args.input)?;
    let kms = kms_client(args.endpoint_url.as_deref(), &args.key_arn[0]).await;
    let mut keyring = KmsKeyring::new(kms, args.key_arn[0].clone());
    for arn in &args.key_arn[1..] {
        keyring = keyring.with_decrypt_key(arn.clone());
    }
    let client = Client::new(keyring, Config::default())?;
    let (mut reader, bar) = with_progress(reader, len);
    let options = DecryptOptions {
        context,
        ..Default::default()
    };
    let endpoint = args.endpoint_url.as_deref();
    let config = client.config().clone();
    let (raw, reader) = tokio::task::spawn_blocking(move || {
        let raw = keyward_envelope::UnverifiedHeader::read_sync(&mut reader, &config);
        (raw, reader)
    })
    .await?;
    let raw = raw.map_err(|e| explain(e, endpoint))?;
    let decryption = client
        .begin_decrypt(raw, &options)
        .await
        .map_err(|e| explain(e, endpoint))?;
    let output = Output::open(&args.output)?;
    finish(
        move |r, w| decryption.read_sync(r, w),
        reader,
        output,
        bar,
        args.endpoint_url,
    )
    .await
}
