//! The k8s-deployer binary: parses flags, sets up logging and runs the server
//! until SIGTERM or ctrl-c.

use anyhow::Context as _;
use clap::Parser as _;
use k8s_deployer::{Config, Server, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(&config.log_filter, config.log_format).context("setting up logging")?;

    let server = Server::bind(&config)
        .await
        .context("starting k8s-deployer")?;
    tracing::info!(
        listen = %server.local_addr(),
        version = env!("CARGO_PKG_VERSION"),
        "k8s-deployer listening for gRPC; health is NOT_SERVING until the Kubernetes API server answers"
    );

    server
        .run_until_signalled()
        .await
        .context("running k8s-deployer")?;
    Ok(())
}
