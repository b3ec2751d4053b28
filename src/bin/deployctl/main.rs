//! deployctl, the command-line client of k8s-deployer: deploys an image, follows the pod live
//! until it is ready (or fails, or time runs out), and shows, lists, deletes and watches pods;
//! applies, rolls out, scales, restarts, rolls back, shows and deletes Deployments, following
//! their rollouts live.
//!
//! Its exit codes are for CI jobs to rely on (see `exit`); its output is a live status line on
//! a terminal, one line per change otherwise, or JSON lines (see `output`).

mod args;
mod commands;
mod connect;
mod deployments;
mod exit;
mod follow;
mod output;
mod rollout;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::exit::Failure;
use crate::output::{Mode, Output};

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Usage errors are bad input (2); --help and --version succeed.
            let code = if error.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::SUCCESS
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let mut out = Output::new(Mode::choose(cli.output, std::io::stdout().is_terminal()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deployctl: cannot start the async runtime: {error}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = commands::run(&cli, &mut out) => result,
            _ = tokio::signal::ctrl_c() => Err(Failure::interrupted()),
        }
    });
    ExitCode::from(out.finish(&result))
}
