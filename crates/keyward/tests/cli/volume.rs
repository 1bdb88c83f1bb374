//! `keyward volume create|info|attach|serve` against `keyward kms serve --dev`,
//! with the aws CLI for the key and qemu-io / nbdinfo as the export's clients.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{keyward, require_tool, run_with_deadline, KmsChild};

const DEADLINE: Duration = Duration::from_secs(60);

fn aws(kms: &KmsChild, args: &[&str]) -> String {
    let mut command = Command::new(require_tool("aws"));
    kms.aws_env(&mut command);
    command
        .args(["--endpoint-url", &kms.endpoint, "--output", "text"])
        .args(args);
    let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
    assert!(status.success(), "aws {args:?}: {err}");
    out.trim().to_owned()
}

fn volume(kms: &KmsChild, args: &[&str]) -> (bool, String, String) {
    let mut command = keyward();
    kms.aws_env(&mut command);
    command.arg("volume").args(args);
    let (status, out, err) = run_with_deadline(&mut command, DEADLINE);
    (status.success(), out, err)
}

#[test]
fn create_info_attach_and_serve_a_volume_under_the_embedded_kms() {
    require_tool("qemu-io");
    require_tool("nbdinfo");
    let dir = tempfile::tempdir().unwrap();
    let kms = KmsChild::start(&dir.path().join("kms"));
    let key_arn = aws(&kms, &["kms", "create-key", "--query", "KeyMetadata.Arn"]);
    let path = dir.path().join("disk.img");
    let path_s = path.display().to_string();
    let endpoint = ["--endpoint-url", kms.endpoint.as_str()];

    let (ok, out, err) = volume(
        &kms,
        &[
            &[
                "create",
                "--path",
                &path_s,
                "--size",
                "16M",
                "--key-id",
                &key_arn,
                "--context",
                "keyward:cluster=c-9",
            ][..],
            &endpoint,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["KeyArn"], key_arn.as_str());
    assert_eq!(created["Size"], 16 << 20);
    let volume_id = created["VolumeId"].as_str().unwrap().to_owned();
    assert_eq!(
        created["EncryptionContext"]["keyward:volume-id"],
        volume_id.as_str()
    );
    assert_eq!(created["EncryptionContext"]["keyward:cluster"], "c-9");

    // Never overwritten.
    let (ok, _, err) = volume(
        &kms,
        &[
            &[
                "create", "--path", &path_s, "--size", "16M", "--key-id", &key_arn,
            ][..],
            &endpoint,
        ]
        .concat(),
    );
    assert!(!ok && err.contains("already exists"), "{err}");

    let (ok, out, err) = volume(&kms, &["info", "--path", &path_s]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&volume_id) && out.contains("aes-xts-plain64"),
        "{out}"
    );

    let node = format!("arn:aws:iam::{}:root", kms.account_id);
    let (ok, out, err) = volume(
        &kms,
        &[
            &["attach", "--path", &path_s, "--node-principal", &node][..],
            &endpoint,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"GrantRetired\": true"), "{out}");
    assert_eq!(
        aws(
            &kms,
            &[
                "kms",
                "list-grants",
                "--key-id",
                &key_arn,
                "--query",
                "length(Grants)"
            ]
        ),
        "0"
    );

    // Serve, use, disable the key: the re-check detaches within a few seconds.
    let mut command = keyward();
    kms.aws_env(&mut command);
    let mut child = command
        .args([
            "volume",
            "serve",
            "--path",
            &path_s,
            "--node-principal",
            &node,
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--recheck-seconds", "1"])
        .args(endpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines
        .next()
        .expect("serve prints where it listens")
        .unwrap();
    let uri = banner.split_whitespace().last().unwrap().to_owned();
    let (address, creds) = uri
        .strip_prefix("nbds://")
        .and_then(|rest| rest.split_once(&format!("/{volume_id}?tls-certificates=")))
        .unwrap_or_else(|| panic!("an nbds:// URI with the credentials directory: {banner}"));
    let port = address.strip_prefix("127.0.0.1:").expect("on loopback");
    let creds = std::path::PathBuf::from(creds);
    let where_creds = lines.next().unwrap().unwrap();
    assert!(
        where_creds.contains("client-key.pem")
            && where_creds.contains(&creds.display().to_string()),
        "{where_creds}"
    );
    for file in ["ca-cert.pem", "client-cert.pem", "client-key.pem"] {
        assert!(creds.join(file).exists(), "{file} in {}", creds.display());
    }
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(creds.join("client-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(
        aws(
            &kms,
            &[
                "kms",
                "list-grants",
                "--key-id",
                &key_arn,
                "--query",
                "length(Grants)"
            ]
        ),
        "1"
    );
    let qemu_target = [
        "--object".to_owned(),
        format!("tls-creds-x509,id=tls0,endpoint=client,dir={}", creds.display()),
        "--image-opts".to_owned(),
        format!(
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},export={volume_id},tls-creds=tls0"
        ),
    ];
    let mut io = Command::new(require_tool("qemu-io"));
    io.args(&qemu_target)
        .args(["-c", "write -P 0x99 5 70000", "-c", "read -P 0x99 5 70000"]);
    let (status, out, err) = run_with_deadline(&mut io, DEADLINE);
    assert!(status.success() && !out.contains("failed"), "{out}{err}");
    // Plain TCP is refused: no listing, no read.
    let mut info = Command::new(require_tool("nbdinfo"));
    info.args(["--list", &format!("nbd://{address}/")]);
    let (status, out, _) = run_with_deadline(&mut info, DEADLINE);
    assert!(!status.success() && !out.contains(&volume_id), "{out}");
    let mut io = Command::new(require_tool("qemu-io"));
    io.args([
        "-f",
        "raw",
        &format!("nbd://{address}/{volume_id}"),
        "-c",
        "read 0 4k",
    ]);
    let (status, out, _) = run_with_deadline(&mut io, DEADLINE);
    assert!(
        !status.success() && !out.contains("bytes at offset"),
        "{out}"
    );

    aws(&kms, &["kms", "disable-key", "--key-id", &key_arn]);
    let mut refused = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let mut info = Command::new(require_tool("nbdinfo"));
        info.arg(&uri);
        let (status, _, _) = run_with_deadline(&mut info, DEADLINE);
        if !status.success() {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the export still served 10 s after the key was disabled"
    );
    aws(&kms, &["kms", "enable-key", "--key-id", &key_arn]);
    // Access is back: the export recovers by itself.
    let mut recovered = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let mut io = Command::new(require_tool("qemu-io"));
        io.args(&qemu_target).args(["-c", "read -P 0x99 5 70000"]);
        let (status, out, _) = run_with_deadline(&mut io, DEADLINE);
        if status.success() && !out.contains("failed") && !out.contains("error") {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "the export did not come back 10 s after the key was enabled"
    );

    // SIGTERM: detach and retire the grant, exit 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("KMS refused the volume's key") && stderr.contains("DisabledException"),
        "{stderr}"
    );
    assert!(stderr.contains("volume re-attached"), "{stderr}");
    assert!(stderr.contains("grant retired"), "{stderr}");
    assert_eq!(
        aws(
            &kms,
            &[
                "kms",
                "list-grants",
                "--key-id",
                &key_arn,
                "--query",
                "length(Grants)"
            ]
        ),
        "0"
    );

    // A corrupted header: a clear error, exit 1, file untouched.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = 7;
    std::fs::write(&path, &bytes).unwrap();
    let (ok, _, err) = volume(&kms, &["info", "--path", &path_s]);
    assert!(
        !ok && err.contains("format version 7 is not supported"),
        "{err}"
    );
    let (ok, _, err) = volume(
        &kms,
        &[
            &["attach", "--path", &path_s, "--node-principal", &node][..],
            &endpoint,
        ]
        .concat(),
    );
    assert!(!ok && err.contains("format version 7"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
