//! `keyward`: encryption at rest under the customer's own KMS key.
//!
//! One binary for every role: everything on one machine (`keyward up`: the
//! embedded KMS, the control plane and the API), one control-plane replica of several
//! (`keyward serve`), the platform's CLI of the API
//! (`keyward cluster|doc|backup|disk ...`), the embedded KMS server alone
//! (`keyward kms serve`), envelope encryption of files (`keyward encrypt` /
//! `keyward decrypt`) and encrypted block volumes (`keyward volume ...`). Each
//! verb lives in its own module; this file only parses the command line and
//! reports errors with a next step.

use clap::{Parser, Subcommand};

mod alarms_cmd;
mod api_client;
mod audit_cmd;
mod cluster_cmd;
mod crypt_cmd;
mod data_cmd;
mod kms_cmd;
mod notify_cmd;
mod org_cmd;
mod root_key_place;
mod serve_cmd;
mod up_cmd;
mod usage_cmd;
mod volume_cmd;

#[derive(Parser)]
#[command(
    name = "keyward",
    version,
    about = "Encryption at rest under the customer's own KMS key"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines on stderr are written: `text` for people, `json` (one object a line, with
    /// the span fields such as the request id and the cluster id) for a log collector.
    #[arg(long, global = true, env = "KEYWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything on this machine: the embedded KMS, the control plane and the API.
    Up(up_cmd::UpArgs),
    /// Run one control-plane replica: the API and the operator, on a PostgreSQL database and an
    /// S3 bucket that several replicas share, against AWS or an embedded KMS.
    Serve(serve_cmd::ServeArgs),
    /// Clusters (the platform's side of the guide), through the keyward API.
    Cluster(cluster_cmd::ClusterArgs),
    /// A cluster's documents, through the keyward API.
    Doc(data_cmd::DocArgs),
    /// A cluster's backups, through the keyward API.
    Backup(data_cmd::BackupArgs),
    /// A cluster's disks and their NBD addresses, through the keyward API.
    Disk(data_cmd::DiskArgs),
    /// A cluster's KMS requests as keyward made them, allowed and denied (or as CloudTrail events).
    Audit(audit_cmd::AuditArgs),
    /// A cluster's alarms (key disabled, deletion scheduled, deleted, access denied, data locked),
    /// and their webhook notifications (destinations, deliveries, test).
    Alarms(alarms_cmd::AlarmsArgs),
    /// A cluster's KMS requests per day and operation, what they cost, and the probe's cost.
    Usage(usage_cmd::UsageArgs),
    /// Organizations' API tokens, with the admin token.
    Org(org_cmd::OrgArgs),
    /// The embedded AWS-compatible KMS.
    #[command(subcommand)]
    Kms(kms_cmd::KmsCommand),
    /// Encrypt a file (or stdin) into an AWS Encryption SDK v2 message under a KMS key.
    Encrypt(crypt_cmd::EncryptArgs),
    /// Decrypt an AWS Encryption SDK v2 message with a KMS key.
    Decrypt(crypt_cmd::DecryptArgs),
    /// Encrypted block volumes and their NBD export.
    #[command(subcommand)]
    Volume(volume_cmd::VolumeCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up_cmd::run(args).await,
            Command::Serve(args) => serve_cmd::run(args).await,
            Command::Cluster(args) => cluster_cmd::run(args).await,
            Command::Doc(args) => data_cmd::doc(args).await,
            Command::Backup(args) => data_cmd::backup(args).await,
            Command::Disk(args) => data_cmd::disk(args).await,
            Command::Org(args) => org_cmd::run(args).await,
            Command::Audit(args) => audit_cmd::run(args).await,
            Command::Alarms(args) => alarms_cmd::run(args).await,
            Command::Usage(args) => usage_cmd::run(args).await,
            Command::Kms(command) => kms_cmd::run(command).await,
            Command::Encrypt(args) => crypt_cmd::encrypt(args).await,
            Command::Decrypt(args) => crypt_cmd::decrypt(args).await,
            Command::Volume(command) => volume_cmd::run(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
