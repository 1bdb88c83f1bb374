//! `keyward encrypt` / `keyward decrypt` against `keyward kms serve --dev`, and
//! their messages opened by the official `aws-encryption-cli`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{keyward, require_tool, run_with_deadline, KmsChild};

const DEADLINE: Duration = Duration::from_secs(60);

async fn key(kms: &KmsChild) -> String {
    let sdk = kms.sdk_client().await;
    let out = sdk.create_key().send().await.expect("CreateKey");
    out.key_metadata().unwrap().arn().unwrap().to_owned()
}

fn verb(kms: &KmsChild, args: &[&str]) -> Command {
    let mut command = keyward();
    kms.aws_env(&mut command);
    command.args(args).env("KEYWARD_LOG", "warn");
    command
}

fn plaintext(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_pipes_round_trip_and_the_official_cli_opens_them() {
    let dir = tempfile::tempdir().unwrap();
    let kms = KmsChild::start(&dir.path().join("kms"));
    let arn = key(&kms).await;
    let plain = dir.path().join("plain");
    std::fs::write(&plain, plaintext(700_000)).unwrap();
    let msg = dir.path().join("msg");
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "encrypt",
                "--key-arn",
                &arn,
                "--context",
                "cluster=c-1",
                "--context",
                "clé=välue",
            ],
        )
        .args([
            "--endpoint-url",
            &kms.endpoint,
            "--frame-length",
            "4096",
            "-i",
        ])
        .arg(&plain)
        .arg("-o")
        .arg(&msg),
        DEADLINE,
    );
    assert!(status.success(), "{err}");
    assert_eq!(&std::fs::read(&msg).unwrap()[..3], &[0x02, 0x04, 0x78]);

    // Decrypt to a file, the endpoint from the AWS default chain this time.
    let out = dir.path().join("out");
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "decrypt",
                "--key-arn",
                &arn,
                "--context",
                "cluster=c-1",
                "-i",
            ],
        )
        .env("AWS_ENDPOINT_URL_KMS", &kms.endpoint)
        .arg(&msg)
        .arg("-o")
        .arg(&out),
        DEADLINE,
    );
    assert!(status.success(), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), plaintext(700_000));

    // stdin -> stdout, both ways, signed suite.
    let mut enc = verb(
        &kms,
        &[
            "encrypt",
            "--key-arn",
            &arn,
            "--suite",
            "0578",
            "--endpoint-url",
            &kms.endpoint,
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = enc.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&plaintext(12_345)).unwrap());
    let encrypted = enc.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(encrypted.status.success());
    assert_eq!(&encrypted.stdout[..3], &[0x02, 0x05, 0x78]);
    let signed = dir.path().join("signed");
    std::fs::write(&signed, &encrypted.stdout).unwrap();
    let decrypted = verb(
        &kms,
        &[
            "decrypt",
            "--key-arn",
            &arn,
            "--endpoint-url",
            &kms.endpoint,
        ],
    )
    .stdin(std::fs::File::open(&signed).unwrap())
    .output()
    .unwrap();
    assert!(
        decrypted.status.success(),
        "{}",
        String::from_utf8_lossy(&decrypted.stderr)
    );
    assert_eq!(decrypted.stdout, plaintext(12_345));

    // A FIFO as output is written through, never replaced by a file.
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read(reader_path).unwrap());
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "decrypt",
                "--key-arn",
                &arn,
                "--endpoint-url",
                &kms.endpoint,
                "-i",
            ],
        )
        .arg(&msg)
        .arg("-o")
        .arg(&fifo),
        DEADLINE,
    );
    assert!(status.success(), "{err}");
    assert_eq!(reader.join().unwrap(), plaintext(700_000));
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO is still a FIFO"
    );

    // The official CLI opens what `keyward encrypt` wrote.
    let theirs = dir.path().join("theirs");
    let mut cli = Command::new(require_tool("aws-encryption-cli"));
    kms.aws_env(&mut cli);
    cli.env("AWS_ENDPOINT_URL_KMS", &kms.endpoint)
        .args([
            "--decrypt",
            "-S",
            "--commitment-policy",
            "require-encrypt-require-decrypt",
        ])
        .args([
            "--wrapping-keys",
            &format!("key={arn}"),
            "--encryption-context",
            "cluster=c-1",
            "-i",
        ])
        .arg(&msg)
        .arg("-o")
        .arg(&theirs);
    let (status, out, err) = run_with_deadline(&mut cli, DEADLINE);
    assert!(status.success(), "{out}{err}");
    assert_eq!(std::fs::read(&theirs).unwrap(), plaintext(700_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_to_do_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let kms = KmsChild::start(&dir.path().join("kms"));
    let arn = key(&kms).await;
    let plain = dir.path().join("plain");
    std::fs::write(&plain, plaintext(10_000)).unwrap();
    let msg = dir.path().join("msg");
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "encrypt",
                "--key-arn",
                &arn,
                "--context",
                "cluster=c-1",
                "--endpoint-url",
                &kms.endpoint,
                "-i",
            ],
        )
        .arg(&plain)
        .arg("-o")
        .arg(&msg),
        DEADLINE,
    );
    assert!(status.success(), "{err}");

    // Wrong context: the one opaque error, with the next step; no output file.
    let out = dir.path().join("out");
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "decrypt",
                "--key-arn",
                &arn,
                "--context",
                "cluster=c-2",
                "--endpoint-url",
                &kms.endpoint,
                "-i",
            ],
        )
        .arg(&msg)
        .arg("-o")
        .arg(&out),
        DEADLINE,
    );
    assert!(!status.success());
    assert!(
        err.contains("cannot decrypt") && err.contains("--context"),
        "{err}"
    );
    assert!(!out.exists() && !dir.path().join("out.partial").exists());

    // A truncated message: refused, and the partial plaintext is removed.
    let bytes = std::fs::read(&msg).unwrap();
    let cut = dir.path().join("cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "decrypt",
                "--key-arn",
                &arn,
                "--endpoint-url",
                &kms.endpoint,
                "-i",
            ],
        )
        .arg(&cut)
        .arg("-o")
        .arg(&out),
        DEADLINE,
    );
    assert!(!status.success() && err.contains("cannot decrypt"), "{err}");
    assert!(!out.exists() && !dir.path().join("out.partial").exists());

    // A malformed --context is refused before any work.
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "encrypt",
                "--key-arn",
                &arn,
                "--context",
                "nopair",
                "--endpoint-url",
                &kms.endpoint,
                "-i",
            ],
        )
        .arg(&plain)
        .arg("-o")
        .arg(dir.path().join("x")),
        DEADLINE,
    );
    assert!(!status.success() && err.contains("KEY=VALUE"), "{err}");

    // A disabled key: the KMS's reason and how to fix it.
    kms.sdk_client()
        .await
        .disable_key()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let (status, _, err) = run_with_deadline(
        verb(
            &kms,
            &[
                "encrypt",
                "--key-arn",
                &arn,
                "--endpoint-url",
                &kms.endpoint,
                "-i",
            ],
        )
        .arg(&plain)
        .arg("-o")
        .arg(dir.path().join("y")),
        DEADLINE,
    );
    assert!(!status.success());
    assert!(
        err.contains("DisabledException") && err.contains("aws kms enable-key"),
        "{err}"
    );
}
