use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A multi-modal OpenAI/OpenRouter-compatible inference router"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Browse the self-hosted model catalogue and render its deployment files.
    #[command(subcommand)]
    Catalogue(switchyard::catalogue::Command),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Some(Cmd::Catalogue(cmd)) => match switchyard::catalogue::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => {
            println!("switchyard");
            ExitCode::SUCCESS
        }
    }
}
