//! The [`Sandbox`] trait and the [`ExecRequest`] it runs.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::SandboxConfig;
use crate::error::SandboxError;
use crate::outcome::SandboxResult;

/// Where the module of an execution comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A `.wasm` or `.wat` file on the host.
    Path(PathBuf),
    /// Module bytes (binary or text) held in memory, with a name for
    /// messages.
    Bytes {
        /// A name for logs and errors.
        name: String,
        /// The module.
        bytes: Arc<[u8]>,
    },
}

impl ModuleSource {
    /// A name for messages: the path, or the given name.
    pub fn display_name(&self) -> String {
        match self {
            ModuleSource::Path(path) => path.display().to_string(),
            ModuleSource::Bytes { name, .. } => name.clone(),
        }
    }
}

/// Where the guest's stdin comes from.
#[derive(Debug)]
pub enum Stdin {
    /// These bytes, then end of input. The default is empty.
    Bytes(Vec<u8>),
    /// An open regular file, read as the guest asks for it (never loaded
    /// whole into memory).
    File(std::fs::File),
    /// This process's own stdin, read as the guest asks for it. A guest
    /// waiting on it is still stopped by the timeout.
    Inherit,
}

impl Default for Stdin {
    fn default() -> Self {
        Stdin::Bytes(Vec::new())
    }
}

impl From<Vec<u8>> for Stdin {
    fn from(bytes: Vec<u8>) -> Self {
        Stdin::Bytes(bytes)
    }
}

impl From<&[u8]> for Stdin {
    fn from(bytes: &[u8]) -> Self {
        Stdin::Bytes(bytes.to_vec())
    }
}

/// Receives guest output as it is written, before the run ends.
///
/// Only output within the stream's cap is passed on: once a stream reaches
/// its cap, the rest is dropped here as well as in the captured copy.
pub type OutputSink = Box<dyn FnMut(&[u8]) + Send>;

/// One execution: the module, its arguments, extra environment and stdin.
///
/// The config's `args` come first in the guest's argv (after the module
/// name), then these; `env` is added to the config's environment and wins
/// over it.
#[derive(Default)]
pub struct ExecRequest {
    /// The module to run; `None` means the config's `module`.
    pub module: Option<ModuleSource>,
    /// Arguments after the config's own.
    pub args: Vec<String>,
    /// Variables added to the config's environment.
    pub env: Vec<(String, String)>,
    /// The guest's stdin; empty by default.
    pub stdin: Stdin,
    /// Live receiver of stdout, if any.
    pub stdout_sink: Option<OutputSink>,
    /// Live receiver of stderr, if any.
    pub stderr_sink: Option<OutputSink>,
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecRequest")
            .field("module", &self.module)
            .field("args", &self.args)
            .field("env", &self.env)
            .field(
                "stdin",
                &match &self.stdin {
                    Stdin::Bytes(bytes) => format!("{} bytes", bytes.len()),
                    Stdin::File(_) => "a file".to_owned(),
                    Stdin::Inherit => "inherited".to_owned(),
                },
            )
            .field("stdout_sink", &self.stdout_sink.is_some())
            .field("stderr_sink", &self.stderr_sink.is_some())
            .finish()
    }
}

impl ExecRequest {
    /// A request from a command line: `cmd[0]` is the module path and the
    /// rest are its arguments.
    pub fn from_command(cmd: &[String]) -> Result<ExecRequest, SandboxError> {
        let (module, args) = cmd.split_first().ok_or(SandboxError::NoModule)?;
        Ok(ExecRequest {
            module: Some(ModuleSource::Path(PathBuf::from(module))),
            args: args.to_vec(),
            ..ExecRequest::default()
        })
    }
}

/// A sandbox: a backend configured once, then used for any number of
/// executions, each isolated from the others.
pub trait Sandbox: Sized {
    /// Creates a sandbox, refusing a config it cannot honour in full.
    fn new(config: SandboxConfig) -> Result<Self, SandboxError>;

    /// Runs `cmd[0]` with `cmd[1..]` as its arguments.
    fn execute(&mut self, cmd: &[String]) -> Result<SandboxResult, SandboxError> {
        self.run(ExecRequest::from_command(cmd)?)
    }

    /// Runs one request.
    fn run(&mut self, request: ExecRequest) -> Result<SandboxResult, SandboxError>;

    /// Releases the sandbox and everything it holds.
    fn destroy(self);
}
