//! The backend-neutral facade of mimobox.
//!
//! This crate defines what a sandbox is, without saying how one is built:
//! the [`Sandbox`] trait, its [`SandboxConfig`] (loadable from a TOML
//! [`Profile`]), the [`SandboxResult`] of an execution with its typed
//! [`Outcome`], and the [`SandboxError`] that prevents one. It does no
//! backend work and depends on no runtime; `mimobox-wasm` implements the
//! trait on Wasmtime.
//!
//! ```
//! use std::time::Duration;
//! use mimobox_core::{Mount, SandboxConfig};
//!
//! let config = SandboxConfig {
//!     timeout: Duration::from_secs(2),
//!     fuel: Some(50_000_000),
//!     fs_readonly: vec![Mount::parse("/srv/data::/data").unwrap()],
//!     ..SandboxConfig::default()
//! };
//! config.validate().unwrap();
//! ```

mod config;
mod error;
pub mod grants;
pub mod keys;
mod outcome;
mod profile;
mod sandbox;
pub mod serde_units;
mod session;
pub mod text;
pub mod toml_file;
pub mod units;

pub use config::{
    Backend, CacheConfig, ConfigError, DEFAULT_COMPILE_TIMEOUT, DEFAULT_MAX_DISK_WRITE,
    DEFAULT_MAX_MODULE_SIZE, DEFAULT_MAX_OPEN_FILES, DEFAULT_MAX_OUTPUT, DEFAULT_MEMORY_LIMIT,
    DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, Mount, PoolConfig, SandboxConfig, env_var_problem,
};
pub use error::{ResumeError, SandboxError};
pub use outcome::{Outcome, SandboxResult, ToolCall};
pub use profile::{Profile, ProfileError};
pub use sandbox::{ExecRequest, ModuleSource, OutputSink, Sandbox, Stdin};
pub use session::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_LIFETIME, DEFAULT_MAX_FILE_READ, DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MAX_RESULTS, DEFAULT_OPEN_TIMEOUT, EventSink, FigureFormat, MimeBundle, RESTORE_ARGV,
    RESTORE_ENV, Session, SessionConfig, TurnError, TurnEvent, TurnRequest, TurnResult, fill_restore,
};
