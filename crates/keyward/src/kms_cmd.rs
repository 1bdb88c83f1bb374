//! `keyward kms ...`: the embedded KMS server.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum KmsCommand {
    /// Serve the AWS-compatible KMS on loopback.
    Serve,
}

pub async fn run(command: KmsCommand) -> anyhow::Result<()> {
    match command {
        KmsCommand::Serve => anyhow::bail!("`keyward kms serve` is not built yet"),
    }
}
