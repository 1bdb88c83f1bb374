//! `keyward encrypt` / `keyward decrypt`: files as AWS Encryption SDK v2 messages.

use clap::Args;

#[derive(Args)]
pub struct EncryptArgs {}

#[derive(Args)]
pub struct DecryptArgs {}

pub async fn encrypt(_args: EncryptArgs) -> anyhow::Result<()> {
    anyhow::bail!("`keyward encrypt` is not built yet")
}

pub async fn decrypt(_args: DecryptArgs) -> anyhow::Result<()> {
    anyhow::bail!("`keyward decrypt` is not built yet")
}
