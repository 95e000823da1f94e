//! Modules: reading and checking a source, compiling it within its bounds,
//! the in-memory map of compiled modules, the disk cache, and the modules
//! derived from another (instrumented forms and preload checkpoints) with
//! their build lock; and what the page table tells of a module's image
//! mapped as a linear memory.

pub(crate) mod cache;
pub(crate) mod loader;
pub(crate) mod pages;
mod recent;
pub(crate) mod scan;

pub use loader::{CompileEvent, CompileObserver, ModuleOrigin};
pub(crate) use loader::{EntryPoint, LoadLimits, LoadedModule, Loader, NO_ENTRY_POINT, one_line};
