//! The WebAssembly backend of mimobox: [`WasmSandbox`] runs WASI preview 1
//! modules on Wasmtime under the limits of a
//! [`SandboxConfig`](mimobox_core::SandboxConfig).
//!
//! - **Time.** An epoch clock stops guest code at the wall-clock limit, and
//!   a timer stops a guest blocked in a host call. Compilation is bounded
//!   separately and never counts against the guest.
//! - **Fuel.** An instruction budget of its own, compiled in only when set.
//! - **Memory.** A limiter bounds all linear memories together, and tables
//!   and instances; a run that hits it ends as `MemoryLimit`.
//! - **Output.** stdout and stderr are captured up to their caps; the rest
//!   is dropped and flagged, and can be streamed live to a sink.
//! - **Files.** Only the configured mounts, read-only or read-write; WASI
//!   refuses paths that leave them.
//!
//! ```no_run
//! use mimobox_core::{ExecRequest, ModuleSource, SandboxConfig};
//! use mimobox_wasm::WasmSandbox;
//!
//! let sandbox = WasmSandbox::create(SandboxConfig::default())?;
//! let result = sandbox.run(ExecRequest {
//!     module: Some(ModuleSource::Path("cat.wasm".into())),
//!     stdin: b"hi".to_vec().into(),
//!     ..ExecRequest::default()
//! })?;
//! assert_eq!(result.stdout, b"hi");
//! # Ok::<(), mimobox_core::SandboxError>(())
//! ```

mod engine;
mod exec;
mod guest;
mod module;
mod sandbox;
mod session;

pub use guest::check::check_config;
pub use guest::limits::MAX_MEMORY_LIMIT;
pub use mimobox_core::ResumeError;
pub use mimobox_files::{Entry, EntryKind, FileError, Listing};
pub use mimobox_tools::{Tool, ToolError, ToolLimits, Toolbox};
pub use module::cache::configured_cache;
pub use module::{CompileEvent, CompileObserver, ModuleOrigin};
pub use sandbox::WasmSandbox;
pub use session::{Checkpoint, FileOpError, PauseBinding, WasmSession};
