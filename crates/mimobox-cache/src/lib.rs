//! The on-disk cache of compiled modules.
//!
//! Compiling a large module (CPython is 26 MB of wasm) takes seconds; loading
//! its compiled artifact from here takes well under a millisecond. This crate
//! knows files and hashes, not sandboxes: callers hand it module bytes or
//! paths and an engine identity, and get back paths of artifacts to map.
//!
//! - **Keys.** An artifact is keyed by the SHA-256 of the module bytes and by
//!   an [`EngineId`] that covers everything that changes the generated code
//!   (runtime version, compiler settings, fuel instrumentation). Artifacts of
//!   different engines live in different directories, so an engine change
//!   never loads a stale artifact.
//! - **Fingerprints.** A [`Fingerprint`] of a module file (device, inode,
//!   size, modification and change times) maps to its content hash, so an
//!   unchanged file is not hashed again.
//! - **Writes.** Each writer creates its own temp file exclusively and renames
//!   it into place; readers see either no artifact or a whole one.
//! - **Trust.** The directory must belong to the current user and be closed
//!   to group and others. Inside it, nothing is reached through a symlink,
//!   no file is opened in a way that can block (a FIFO), every read is
//!   bounded, and nothing outside it is ever removed. Artifacts and
//!   fingerprint records must have mode 0400.
//!
//! ```no_run
//! use mimobox_cache::{ContentHash, EngineId, ModuleCache};
//!
//! let cache = ModuleCache::open_default().unwrap();
//! let engine = EngineId::from_parts(&["wasmtime-48", "cranelift", "fuel=off"]);
//! let key = ContentHash::of(b"\0asm\x01\0\0\0");
//! if cache.artifact(&engine, &key).is_none() {
//!     cache.store(&engine, &key, b"compiled artifact").unwrap();
//! }
//! ```

mod beneath;
mod dir;
mod error;
mod fingerprint;
mod hash;
mod lock;
mod maintenance;
mod protocol;
mod store;

pub use dir::default_dir;
pub use error::CacheError;
pub use fingerprint::Fingerprint;
pub use hash::{ContentHash, EngineId};
pub use lock::{ArtifactPin, KeyLock, LockOutcome};
pub use maintenance::{CacheStats, PruneReport};
pub use protocol::Fetched;
pub use store::{Artifact, DEFAULT_MAX_SIZE, FINGERPRINT_SETTLE, ModuleCache};
