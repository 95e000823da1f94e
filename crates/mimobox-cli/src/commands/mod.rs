//! One module per subcommand, each with an `execute` function.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

mod cache;
mod compile;
mod demo;
mod mcp;
mod pause;
mod profile;
mod progress;
mod protocol;
mod run;
mod serve;
mod session;
mod terminal;

/// Runs the parsed command line.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::execute(*args),
        Command::Demo(args) => demo::execute(args),
        Command::Profile(command) => profile::execute(command),
        Command::Compile(args) => compile::execute(*args),
        Command::Cache(args) => cache::execute(args),
        Command::Session(args) => session::execute(*args),
        Command::Mcp(args) => mcp::execute(*args),
        Command::Serve(args) => serve::execute(*args),
    }
}
