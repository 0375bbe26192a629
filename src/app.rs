//! Application lifecycle: build, run, shut down. (The server lands with the
//! durable delivery issue.)

use std::path::PathBuf;
use std::process::ExitCode;

pub fn serve_blocking(_policy: PathBuf, _listen: String) -> anyhow::Result<ExitCode> {
    eprintln!("serve: not yet available");
    Ok(ExitCode::from(2))
}

pub fn migrate_blocking() -> anyhow::Result<ExitCode> {
    eprintln!("migrate: not yet available");
    Ok(ExitCode::from(2))
}
