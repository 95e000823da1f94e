//! Turning a [`ModuleSource`] into a ready-to-instantiate module: read and
//! bound the file, recognise it by fingerprint, and take the compiled code
//! from memory, from the disk cache, or from the compiler.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use mimobox_cache::{
    ArtifactPin, ContentHash, FINGERPRINT_SETTLE, Fetched, Fingerprint, LockOutcome, ModuleCache,
};
use mimobox_core::{ModuleSource, SandboxError};
use wasmtime::{Engine, ExternType, InstancePre, Module, ValType};

use crate::engine::EngineCore;
use crate::guest::state::GuestState;
use crate::module::pages::WarmPages;
use crate::module::recent::Recent;
use crate::module::scan::{ModuleShape, compile_budget};

/// Linked modules a sandbox keeps in memory; past this, the oldest is
/// dropped (a later run maps it from the disk cache again).
const MAX_MODULES_IN_MEMORY: usize = 64;
/// Module paths whose fingerprints a sandbox remembers.
const MAX_PATHS_REMEMBERED: usize = 4096;
/// Shared module byte buffers whose hashes a sandbox remembers.
const MAX_SHARED_BYTES_REMEMBERED: usize = 64;

/// The exported function a module is started through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryPoint {
    /// WASI command: `_start: [] -> []`, exit status through `proc_exit`.
    Start,
    /// `main: [] -> [i32]`, whose result is the exit status.
    Main,
    /// A WASI reactor: `_initialize: [] -> []` when exported, then
    /// `run: [] -> [i32]`, whose result is the exit status.
    Reactor {
        /// Whether `_initialize` is exported (and so called first).
        initialize: bool,
    },
}

/// A loaded module: compiled, linked against WASI and ready to
/// instantiate, or known to need more than a sandbox allows.
pub(crate) enum LoadedModule {
    Ready {
        pre: InstancePre<GuestState>,
        /// How a one-shot run starts it; `None` for a module that only
        /// serves sessions.
        entry: Option<EntryPoint>,
        /// Keeps cache eviction away from the artifact this module maps.
        _pin: Option<ArtifactPin>,
        /// The pages a new session's restore turn writes in its memory.
        warm: WarmPages,
    },
    /// More memories, tables or table elements than any instance may have
    /// (see `limits.rs`). It is not compiled; every run of it ends as over
    /// the memory limit.
    BeyondLimits { reason: String },
}

/// The loader's own bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadLimits {
    /// Largest module file accepted.
    pub(crate) max_module_size: u64,
    /// Bound on one compile.
    pub(crate) compile_timeout: Duration,
    /// Compile memory budget; `None` scales it with the module.
    pub(crate) max_compile_memory: Option<u64>,
}

/// What the loader reports about a compile, for progress displays.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompileEvent {
    /// Compilation of a module that is in no cache has begun.
    Started {
        /// The module's name or path.
        module: String,
        /// Its size in bytes.
        bytes: u64,
    },
    /// That compilation (or preload) has ended (successfully or not).
    Finished,
    /// A profile's `session.preload` has begun to run, to build the
    /// checkpoint its sessions open from.
    Preloading {
        /// The module's name or path.
        module: String,
    },
}

/// Receives [`CompileEvent`]s.
pub type CompileObserver = Arc<dyn Fn(&CompileEvent) + Send + Sync>;

/// Where the compiled code of a module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleOrigin {
    /// This sandbox had already loaded it.
    Memory,
    /// It was mapped from the disk cache.
    DiskCache,
    /// It was compiled (and stored in the disk cache, if there is one).
    Compiled,
}

/// Module bytes shared by the caller, kept alive with their hash.
type SharedBytes = (Arc<[u8]>, ContentHash);

/// Everything a sandbox needs to load modules, shared by its executions.
pub(crate) struct Loader {
    core: Arc<EngineCore>,
    cache: Option<ModuleCache>,
    limits: LoadLimits,
    by_hash: Mutex<Recent<ContentHash, Arc<LoadedModule>>>,
    by_path: Mutex<Recent<PathBuf, (Fingerprint, ContentHash)>>,
    by_bytes: Mutex<Recent<usize, SharedBytes>>,
    observer: Mutex<Option<CompileObserver>>,
}

impl Loader {
    pub(crate) fn new(core: Arc<EngineCore>, cache: Option<ModuleCache>, limits: LoadLimits) -> Loader {
        Loader {
            core,
            cache,
            limits,
            by_hash: Mutex::new(Recent::new(MAX_MODULES_IN_MEMORY)),
            by_path: Mutex::new(Recent::new(MAX_PATHS_REMEMBERED)),
            by_bytes: Mutex::new(Recent::new(MAX_SHARED_BYTES_REMEMBERED)),
            observer: Mutex::new(None),
        }
    }

    pub(crate) fn set_observer(&self, observer: CompileObserver) {
        *self.observer.lock().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    /// Tells the observer, if any, about `event`.
    pub(crate) fn notify(&self, event: &CompileEvent) {
        let observer = self.observer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(observer) = observer {
            observer(event);
        }
    }

    pub(crate) fn cache(&self) -> Option<&ModuleCache> {
        self.cache.as_ref()
    }

    /// Loads `source`, reusing whatever earlier loads left behind.
    pub(crate) fn load(
        &self,
        source: &ModuleSource,
    ) -> Result<(Arc<LoadedModule>, ModuleOrigin), SandboxError> {
        match source {
            ModuleSource::Bytes { name, bytes } => {
                let hash = self.hash_of_shared(bytes);
                if let Some(found) = self.load_compiled(name, hash)? {
                    return Ok(found);
                }
                self.load_bytes(name, hash, Syntax::BinaryOrText, bytes.to_vec())
            }
            ModuleSource::Path(path) => self.load_path(path),
        }
    }

    fn load_path(&self, path: &Path) -> Result<(Arc<LoadedModule>, ModuleOrigin), SandboxError> {
        // The hot path is one stat: an unchanged file that this sandbox has
        // already loaded is recognised by its fingerprint alone.
        let metadata = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
        let fingerprint = self.check_file(path, &metadata)?;
        let remembered = self.lock_paths().get(path).copied();
        let known = remembered.filter(|(fp, _)| *fp == fingerprint).map(|(_, hash)| hash);
        if let Some(loaded) = known.and_then(|hash| self.lock_modules().get(&hash).cloned()) {
            return Ok((loaded, ModuleOrigin::Memory));
        }

        // Otherwise open it, and work from what the open file says (it may
        // have been replaced since the stat).
        let name = path.display().to_string();
        let syntax = Syntax::of_path(path);
        let (mut file, fingerprint) = self.open_checked(path)?;

        // The fingerprint names the content without reading it: first from
        // this sandbox's memory, then from the disk cache.
        let known = self.known_hash(path, &fingerprint);
        if let Some(hash) = known
            && let Some(found) = self.load_compiled(&name, hash)?
        {
            self.remember_path(path, fingerprint, hash);
            return Ok(found);
        }

        // Compiling needs the bytes, and the bytes decide their own hash: a
        // record that disagrees with them (the file changed as it was read)
        // is never trusted for them.
        let (hash, bytes) = self.read_and_remember(path, &mut file, fingerprint)?;
        if known != Some(hash)
            && let Some(found) = self.load_compiled(&name, hash)?
        {
            return Ok(found);
        }
        self.load_bytes(&name, hash, syntax, bytes)
    }

    /// Loads a module derived from `source` by `build` (instrumented, or
    /// pre-initialised by a preload), keyed by the source's content hash
    /// and `recipe`: the derived module is built and compiled once, then
    /// found in memory or in the disk cache by that key without building
    /// it again. `build` gets the source as a binary module.
    pub(crate) fn load_derived(
        &self,
        source: &ModuleSource,
        recipe: &[u8],
        build: impl FnOnce(&[u8]) -> Result<Vec<u8>, SandboxError>,
    ) -> Result<(Arc<LoadedModule>, ModuleOrigin, ContentHash), SandboxError> {
        let name = source.display_name();
        let key_for = |base: &ContentHash| {
            let mut material = b"mimobox derived module v1\0".to_vec();
            material.extend_from_slice(base.to_string().as_bytes());
            material.push(0);
            material.extend_from_slice(recipe);
            ContentHash::of(&material)
        };
        let (base, read) = self.identify(source)?;
        if let Some((module, origin)) = self.load_compiled(&name, key_for(&base))? {
            return Ok((module, origin, base));
        }
        // Read now if identifying did not; the bytes decide the hash (the
        // file may have changed since its fingerprint was recorded).
        let (base, bytes) = match read {
            Some(bytes) => (base, bytes),
            None => self.read_source(source)?,
        };
        let key = key_for(&base);
        if let Some((module, origin)) = self.load_compiled(&name, key)? {
            return Ok((module, origin, base));
        }
        // One builder per key at a time, across processes: the others wait
        // for its artifact rather than build their own (a preload's build
        // takes a session's memory and two compiles).
        // The rest waits for locks, builds and compiles: off the executor.
        crate::exec::offload(|| {
            let _building = match &self.cache {
                Some(cache) => {
                    let lock_key = ContentHash::of(format!("building {key}").as_bytes());
                    // Look again once the lock is held, waited for or not:
                    // another builder may have finished between the miss above
                    // and this lock.
                    match cache.lock(&self.core.id, &lock_key, self.limits.compile_timeout) {
                        LockOutcome::AcquiredAfterWait(lock) | LockOutcome::Acquired(lock) => {
                            if let Some((module, origin)) = self.load_compiled(&name, key)? {
                                return Ok((module, origin, base));
                            }
                            Some(lock)
                        }
                        LockOutcome::Unavailable => None,
                    }
                }
                None => None,
            };
            // A module given as bytes (a checkpoint a caller kept) is bounded
            // like a module file before anything is built from it; a file was
            // bounded when it was read.
            if let ModuleSource::Bytes { .. } = source {
                self.check_checkpoint_size(&name, bytes.len())?;
            }
            let binary = to_binary(&name, Syntax::of_source(source), bytes)?;
            let derived = build(&binary)?;
            let (module, origin) = self.load_bytes(&name, key, Syntax::Binary, derived)?;
            Ok((module, origin, base))
        })
    }

    /// Refuses a checkpoint (a module made of a guest's state) larger than
    /// `max_module_size`, before it is compiled or stored; its compile
    /// memory is bounded in `compile`, like any module's.
    pub(crate) fn check_checkpoint_size(&self, name: &str, size: usize) -> Result<(), SandboxError> {
        if size as u64 > self.limits.max_module_size {
            return Err(SandboxError::CheckpointTooLarge {
                module: name.to_owned(),
                size: size as u64,
                limit: self.limits.max_module_size,
            });
        }
        Ok(())
    }

    /// The source as a binary module, with the content hash of its bytes.
    pub(crate) fn binary_of(&self, source: &ModuleSource) -> Result<(ContentHash, Vec<u8>), SandboxError> {
        let name = source.display_name();
        let (hash, bytes) = self.read_source(source)?;
        Ok((hash, to_binary(&name, Syntax::of_source(source), bytes)?))
    }

    /// The content hash of `source`, and its bytes if they had to be read
    /// to know it (a file whose fingerprint is not on record).
    fn identify(&self, source: &ModuleSource) -> Result<(ContentHash, Option<Vec<u8>>), SandboxError> {
        let path = match source {
            ModuleSource::Bytes { bytes, .. } => return Ok((self.hash_of_shared(bytes), None)),
            ModuleSource::Path(path) => path,
        };
        let metadata = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
        let fingerprint = self.check_file(path, &metadata)?;
        match self.known_hash(path, &fingerprint) {
            Some(hash) => Ok((hash, None)),
            None => self.read_source(source).map(|(hash, bytes)| (hash, Some(bytes))),
        }
    }

    /// The content hash recorded for a file with `fingerprint`: in this
    /// sandbox's memory, else in the disk cache.
    fn known_hash(&self, path: &Path, fingerprint: &Fingerprint) -> Option<ContentHash> {
        let remembered = self.lock_paths().get(path).copied();
        remembered
            .filter(|(fp, _)| fp == fingerprint)
            .map(|(_, hash)| hash)
            .or_else(|| self.cache.as_ref().and_then(|cache| cache.hash_for(fingerprint)))
    }

    /// Reads the whole source and hashes it (remembering a file's hash by
    /// its fingerprint, as `load` does).
    fn read_source(&self, source: &ModuleSource) -> Result<(ContentHash, Vec<u8>), SandboxError> {
        match source {
            ModuleSource::Bytes { bytes, .. } => Ok((self.hash_of_shared(bytes), bytes.to_vec())),
            ModuleSource::Path(path) => {
                let (mut file, fingerprint) = self.open_checked(path)?;
                self.read_and_remember(path, &mut file, fingerprint)
            }
        }
    }

    /// Opens a module file without blocking (a FIFO swapped in since a
    /// stat cannot hang the open), and checks what the handle is.
    fn open_checked(&self, path: &Path) -> Result<(File, Fingerprint), SandboxError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_nonblock())
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let metadata = file.metadata().map_err(|e| open_error(path, e))?;
        let fingerprint = self.check_file(path, &metadata)?;
        Ok((file, fingerprint))
    }

    /// Reads the open file (bounded) and hashes it; the fingerprint is
    /// recorded for the hash only if the file did not change while it was
    /// read.
    fn read_and_remember(
        &self,
        path: &Path,
        file: &mut File,
        fingerprint: Fingerprint,
    ) -> Result<(ContentHash, Vec<u8>), SandboxError> {
        let bytes = read_bounded(file, path, self.limits.max_module_size)?;
        let hash = ContentHash::of(&bytes);
        if file.metadata().is_ok_and(|m| Fingerprint::of(&m) == fingerprint) {
            if let Some(cache) = &self.cache {
                cache.remember(&fingerprint, &hash);
            }
            self.remember_path(path, fingerprint, hash);
        }
        Ok((hash, bytes))
    }

    /// The content hash of shared module bytes, hashed once per allocation:
    /// the map keeps each `Arc` alive, so its address cannot be reused by
    /// other bytes while it is a key.
    fn hash_of_shared(&self, bytes: &Arc<[u8]>) -> ContentHash {
        let key = bytes.as_ptr() as usize;
        let mut shared = self.by_bytes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((kept, hash)) = shared.get(&key)
            && kept.len() == bytes.len()
        {
            return *hash;
        }
        let hash = ContentHash::of(bytes);
        shared.insert(key, (bytes.clone(), hash));
        hash
    }

    /// Refuses what is not a regular file or is over the size limit, and
    /// returns the file's fingerprint.
    fn check_file(&self, path: &Path, metadata: &std::fs::Metadata) -> Result<Fingerprint, SandboxError> {
        if !metadata.is_file() {
            return Err(SandboxError::ModuleUnreadable {
                path: path.to_owned(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        if metadata.len() > self.limits.max_module_size {
            return Err(SandboxError::ModuleTooLarge {
                path: path.to_owned(),
                size: metadata.len(),
                limit: self.limits.max_module_size,
            });
        }
        Ok(Fingerprint::of(metadata))
    }

    fn remember_path(&self, path: &Path, fingerprint: Fingerprint, hash: ContentHash) {
        if fingerprint.is_settled(SystemTime::now(), FINGERPRINT_SETTLE) {
            self.lock_paths().insert(path.to_owned(), (fingerprint, hash));
        }
    }

    /// The module with content `hash` if it is compiled already: in this
    /// sandbox's memory, or in the disk cache. `None` means it must be
    /// compiled.
    fn load_compiled(
        &self,
        name: &str,
        hash: ContentHash,
    ) -> Result<Option<(Arc<LoadedModule>, ModuleOrigin)>, SandboxError> {
        if let Some(loaded) = self.lock_modules().get(&hash) {
            return Ok(Some((loaded.clone(), ModuleOrigin::Memory)));
        }
        let Some(cache) = &self.cache else { return Ok(None) };
        let found = crate::exec::offload(|| {
            cache.get(&self.core.id, &hash, |file| map_artifact(&self.core.engine, file))
        });
        let Some((module, pin)) = found else {
            return Ok(None);
        };
        let loaded = Arc::new(self.link(name, &module, Some(pin))?);
        self.lock_modules().insert(hash, loaded.clone());
        Ok(Some((loaded, ModuleOrigin::DiskCache)))
    }

    /// Compiles `bytes`, whose content hash is `hash`, and links the module.
    fn load_bytes(
        &self,
        name: &str,
        hash: ContentHash,
        syntax: Syntax,
        bytes: Vec<u8>,
    ) -> Result<(Arc<LoadedModule>, ModuleOrigin), SandboxError> {
        let loaded = match crate::exec::offload(|| self.compile(name, hash, syntax, bytes))? {
            Compiled::Module(module, pin, origin) => (Arc::new(self.link(name, &module, pin)?), origin),
            Compiled::BeyondLimits(reason) => {
                (Arc::new(LoadedModule::BeyondLimits { reason }), ModuleOrigin::Compiled)
            }
        };
        self.lock_modules().insert(hash, loaded.0.clone());
        Ok(loaded)
    }

    /// Compiles `bytes` on a worker thread, bounded by the compile timeout.
    /// With a disk cache, one process compiles a given module at a time
    /// (the others wait for its artifact), and the artifact is mapped from
    /// the cache.
    ///
    /// Before that, the module's sections are read: a module beyond the
    /// instance limits is not compiled at all, and one whose compile would
    /// take more memory than the budget is refused.
    fn compile(
        &self,
        name: &str,
        hash: ContentHash,
        syntax: Syntax,
        bytes: Vec<u8>,
    ) -> Result<Compiled, SandboxError> {
        let bytes = to_binary(name, syntax, bytes)?;
        if let Some(shape) = ModuleShape::of(&bytes) {
            if let Some(reason) = shape.beyond_limits() {
                return Ok(Compiled::BeyondLimits(reason));
            }
            let budget = compile_budget(self.limits.max_compile_memory, bytes.len() as u64);
            let estimate = shape.compile_memory();
            if estimate > budget {
                return Err(SandboxError::CompileMemory {
                    module: name.to_owned(),
                    estimate,
                    budget,
                    functions: shape.functions,
                });
            }
        }
        let (done, result) = mpsc::channel();
        let core = self.core.clone();
        let cache = self.cache.clone();
        let module_name = name.to_owned();
        let lock_wait = self.limits.compile_timeout;
        let observer = self.observer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let size = bytes.len() as u64;
        let started = std::time::Instant::now();
        // A compile cannot be interrupted; past the timeout the worker is
        // left to finish and store its artifact, so a retry is a cache hit.
        std::thread::Builder::new()
            .name("mimobox-compile".into())
            .spawn(move || {
                let compiled =
                    compile_and_store(&core, cache.as_ref(), &module_name, hash, &bytes, lock_wait, || {
                        if let Some(observer) = &observer {
                            observer(&CompileEvent::Started { module: module_name.clone(), bytes: size });
                        }
                    });
                if let Some(observer) = &observer {
                    observer(&CompileEvent::Finished);
                }
                let _ = done.send(compiled);
            })
            .map_err(|e| SandboxError::Internal(format!("cannot start a compile thread: {e}")))?;
        match result.recv_timeout(self.limits.compile_timeout) {
            Ok(result) => {
                tracing::debug!(module = name, elapsed = ?started.elapsed(), "loaded after a cache miss");
                result.map(|(module, pin, origin)| Compiled::Module(module, pin, origin))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SandboxError::CompileTimeout {
                module: name.to_owned(),
                limit: self.limits.compile_timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(SandboxError::Internal(format!("{name}: the compile thread died")))
            }
        }
    }

    fn link(
        &self,
        name: &str,
        module: &Module,
        pin: Option<ArtifactPin>,
    ) -> Result<LoadedModule, SandboxError> {
        // A module without an entry point may still serve sessions.
        let entry = entry_point(module);
        let pre = self
            .core
            .linker
            .instantiate_pre(module)
            .map_err(|e| SandboxError::Link { module: name.to_owned(), message: one_line(&e) })?;
        Ok(LoadedModule::Ready { pre, entry, _pin: pin, warm: WarmPages::default() })
    }

    fn lock_modules(&self) -> std::sync::MutexGuard<'_, Recent<ContentHash, Arc<LoadedModule>>> {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_paths(&self) -> std::sync::MutexGuard<'_, Recent<PathBuf, (Fingerprint, ContentHash)>> {
        self.by_path.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The first bytes of a binary module.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Which forms of a module a source may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// Only the binary format (a file not named `*.wat`).
    Binary,
    /// The binary or the text format (a `*.wat` file, or bytes the caller
    /// handed over).
    BinaryOrText,
}

impl Syntax {
    fn of_path(path: &Path) -> Syntax {
        if path.extension().is_some_and(|ext| ext == "wat") { Syntax::BinaryOrText } else { Syntax::Binary }
    }

    fn of_source(source: &ModuleSource) -> Syntax {
        match source {
            ModuleSource::Path(path) => Syntax::of_path(path),
            ModuleSource::Bytes { .. } => Syntax::BinaryOrText,
        }
    }
}

fn libc_nonblock() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32 | rustix::fs::OFlags::CLOEXEC.bits() as i32
}

/// `bytes` as a binary module: text is parsed where `syntax` allows it.
fn to_binary(name: &str, syntax: Syntax, bytes: Vec<u8>) -> Result<Vec<u8>, SandboxError> {
    let invalid = |message: String| SandboxError::InvalidModule { module: name.to_owned(), message };
    if bytes.starts_with(WASM_MAGIC) {
        Ok(bytes)
    } else if syntax == Syntax::BinaryOrText {
        Ok(wat::parse_bytes(&bytes).map_err(|e| invalid(one_line_text(&e)))?.into_owned())
    } else {
        // Never parse (and so never quote) a file that was not meant as a
        // module: a profile's `module` may name any file.
        Err(invalid(
            "not a WebAssembly module (binary modules start with `\\0asm`; text modules must be named `*.wat`)"
                .into(),
        ))
    }
}

/// What a compile produced.
enum Compiled {
    Module(Module, Option<ArtifactPin>, ModuleOrigin),
    BeyondLimits(String),
}

/// Maps an artifact from the disk cache.
fn map_artifact(engine: &Engine, file: File) -> Result<Module, String> {
    // SAFETY: the artifact was written by this engine configuration (its
    // directory is named by the engine id), through an exclusive temp file
    // renamed into place, so it is never modified while mapped; the cache
    // vetted that the file is a regular, sealed (mode 0400) file owned by
    // us, reached without symlinks in a directory only we can write, and
    // pinned it against eviction. Truncated, garbage or incompatible files
    // are rejected by Wasmtime's header and compatibility checks.
    unsafe { Module::deserialize_open_file(engine, file) }.map_err(|e| one_line(&e))
}

/// Compiles `bytes`, through the disk cache's get-or-compile protocol when
/// there is a cache. `started` is called when compilation itself begins.
fn compile_and_store(
    core: &EngineCore,
    cache: Option<&ModuleCache>,
    name: &str,
    hash: ContentHash,
    bytes: &[u8],
    lock_wait: Duration,
    started: impl FnOnce(),
) -> Result<(Module, Option<ArtifactPin>, ModuleOrigin), SandboxError> {
    let invalid =
        |e: wasmtime::Error| SandboxError::InvalidModule { module: name.to_owned(), message: one_line(&e) };
    let Some(cache) = cache else {
        started();
        return Module::new(&core.engine, bytes).map(|m| (m, None, ModuleOrigin::Compiled)).map_err(invalid);
    };
    let fetched = cache.get_or_compile(
        &core.id,
        &hash,
        lock_wait,
        |file| map_artifact(&core.engine, file),
        || {
            started();
            let artifact = core.engine.precompile_module(bytes).map_err(invalid)?;
            tracing::debug!(module = name, "compiled");
            Ok(artifact)
        },
        // SAFETY: these bytes came from `precompile_module` on this very
        // engine a moment ago.
        |artifact| unsafe { Module::deserialize(&core.engine, artifact) }.map_err(invalid),
    )?;
    Ok(match fetched {
        Fetched::Cached(module, pin) => (module, Some(pin), ModuleOrigin::DiskCache),
        Fetched::Compiled(module, pin) => (module, pin, ModuleOrigin::Compiled),
    })
}

fn open_error(path: &Path, error: std::io::Error) -> SandboxError {
    match error.kind() {
        std::io::ErrorKind::NotFound => SandboxError::ModuleNotFound { path: path.to_owned() },
        _ => SandboxError::ModuleUnreadable { path: path.to_owned(), source: error },
    }
}

/// What a one-shot run of a module without an entry point reports.
pub(crate) const NO_ENTRY_POINT: &str = "no entry point: export `_start` (no parameters or results), or `run` or `main` (no parameters, i32 result)";

/// Finds the entry point: `_start: [] -> []` (a command), else
/// `run: [] -> [i32]` (a reactor, initialised through `_initialize` when it
/// exports one), else `main: [] -> [i32]`.
fn entry_point(module: &Module) -> Option<EntryPoint> {
    let func = |name: &str| match module.get_export(name) {
        Some(ExternType::Func(ty)) => Some(ty),
        _ => None,
    };
    let returns_status = |ty: &wasmtime::FuncType| {
        ty.params().len() == 0 && ty.results().map(|r| matches!(r, ValType::I32)).eq([true])
    };
    let no_results = |ty: &wasmtime::FuncType| ty.params().len() == 0 && ty.results().len() == 0;
    if func("_start").is_some_and(|ty| no_results(&ty)) {
        return Some(EntryPoint::Start);
    }
    if func("run").is_some_and(|ty| returns_status(&ty)) {
        return Some(EntryPoint::Reactor {
            initialize: func("_initialize").is_some_and(|ty| no_results(&ty)),
        });
    }
    if func("main").is_some_and(|ty| returns_status(&ty)) {
        return Some(EntryPoint::Main);
    }
    None
}

/// Reads the whole file, refusing to read past `limit` even if it grew
/// after it was measured.
fn read_bounded(file: &mut File, path: &Path, limit: u64) -> Result<Vec<u8>, SandboxError> {
    let mut bytes = Vec::new();
    file.by_ref()
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| SandboxError::ModuleUnreadable { path: path.to_owned(), source: e })?;
    if bytes.len() as u64 > limit {
        return Err(SandboxError::ModuleTooLarge { path: path.to_owned(), size: bytes.len() as u64, limit });
    }
    Ok(bytes)
}

/// Any error, on one line, escaped and bounded (it may quote the module).
fn one_line_text(error: &dyn std::fmt::Display) -> String {
    mimobox_core::text::one_line_bounded(&error.to_string())
}

/// A Wasmtime error with its causes, on one line, escaped and bounded: it
/// may carry names the module chose (functions in a backtrace, imports).
pub(crate) fn one_line(error: &wasmtime::Error) -> String {
    mimobox_core::text::one_line_bounded(&format!("{error:#}"))
}
