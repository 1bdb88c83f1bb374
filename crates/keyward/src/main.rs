//! `keyward`: encryption at rest under the customer's own KMS key.
//!
//! One binary for every role: the embedded KMS server (`keyward kms serve`),
//! envelope encryption of files (`keyward encrypt` / `keyward decrypt`) and
//! encrypted block volumes (`keyward volume ...`). Each verb lives in its own
//! module; this file only parses the command line and reports errors with a
//! next step.

use clap::{Parser, Subcommand};

mod crypt_cmd;
mod kms_cmd;
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
}

#[derive(Subcommand)]
enum Command {
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
