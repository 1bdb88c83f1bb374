//! `keyward volume ...`: encrypted block volumes and their NBD export.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create an encrypted volume file.
    Create,
}

pub async fn run(command: VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Create => anyhow::bail!("`keyward volume create` is not built yet"),
    }
}
