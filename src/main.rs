//! The `aion-webhooks` binary: parse arguments, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = aion_webhooks::cli::Cli::parse();
    match aion_webhooks::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
