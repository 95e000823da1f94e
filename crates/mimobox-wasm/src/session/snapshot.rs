//! Checkpoints: a live instance's linear memories and mutable globals,
//! written out as a pre-initialised module (Wizer's snapshot), and forks,
//! which copy the same state into a fresh instance.
//!
//! Sessions run their module *instrumented*: Wizer's pass exports every
//! memory and mutable global under a well-known name, which is what lets
//! the host read (and, for a fork, write) state that the module keeps
//! private. The instrumented module differs from the original only in its
//! export section, so it behaves the same.
//!
//! A module built on wasi-libc keeps its table of preopened directories in
//! its own memory. A checkpoint taken with that table filled would show
//! every later session the mounts of the session it was taken from, so the
//! table is emptied first, through wasi-libc's `__wasilibc_reset_preopens`
//! (found by name and exported as [`RESET_PREOPENS`]): the guest rebuilds
//! it from its own mounts on its next path lookup. A module that looks up
//! preopens and has no such function cannot be checkpointed.

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{KnownCustom, Name, Parser, Payload};
use wasmtime::{AsContextMut, Extern, Instance, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, Wizer};

use crate::guest::state::GuestState;

/// The export under which the instrumented module offers wasi-libc's
/// `__wasilibc_reset_preopens`.
pub(crate) const RESET_PREOPENS: &str = "mimobox:reset-preopens";
/// wasi-libc's function that empties its preopen table.
const WASI_LIBC_RESET: &str = "__wasilibc_reset_preopens";
/// Wizer's names for the exported state.
pub(crate) const GLOBAL_PREFIX: &str = "__wizer_global_";
pub(crate) const MEMORY_PREFIX: &str = "__wizer_memory_";

/// The instrumented form of `binary`: wasi-libc's reset function exported
/// (when the name section names it), then every memory and mutable global
/// exported by Wizer. Errors say why the module cannot be checkpointed
/// (imported memories, table mutation, ...).
pub(crate) fn instrument(binary: &[u8]) -> Result<Vec<u8>, String> {
    let prepared = with_reset_export(binary)?;
    let (_, instrumented) = Wizer::new().instrument(&prepared).map_err(|e| format!("{e:#}"))?;
    Ok(instrumented)
}

/// `binary` with [`RESET_PREOPENS`] exported, if it has the function and
/// does not export it already.
fn with_reset_export(binary: &[u8]) -> Result<Vec<u8>, String> {
    let exported = export_names(binary)?.iter().any(|name| name == RESET_PREOPENS);
    let mut reset = None;
    for payload in Parser::new(0).parse_all(binary) {
        if let Payload::CustomSection(custom) = payload.map_err(|e| e.to_string())?
            && let KnownCustom::Name(names) = custom.as_known()
        {
            for name in names.into_iter().flatten() {
                if let Name::Function(map) = name {
                    reset = map
                        .into_iter()
                        .flatten()
                        .find(|n| n.name == WASI_LIBC_RESET)
                        .map(|n| n.index)
                        .or(reset);
                }
            }
        }
    }
    let Some(index) = reset.filter(|_| !exported) else { return Ok(binary.to_vec()) };
    let mut module = wasm_encoder::Module::new();
    let mut added = false;
    for payload in Parser::new(0).parse_all(binary) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let Payload::ExportSection(reader) = &payload {
            let mut exports = wasm_encoder::ExportSection::new();
            for export in reader.clone() {
                let export = export.map_err(|e| e.to_string())?;
                RoundtripReencoder.parse_export(&mut exports, export).map_err(|e| e.to_string())?;
            }
            exports.export(RESET_PREOPENS, wasm_encoder::ExportKind::Func, index);
            module.section(&exports);
            added = true;
        } else if let Some((id, range)) = payload.as_section() {
            module.section(&wasm_encoder::RawSection { id, data: &binary[range] });
        }
    }
    // Without an export section there is nothing for a session to call
    // anyway; leave the module as it was.
    Ok(if added { module.finish() } else { binary.to_vec() })
}

/// Prepares a live instance for a checkpoint or fork: refuses state that
/// cannot be carried into another instance, and empties wasi-libc's
/// preopen table so that the copy rebuilds it from its own mounts.
pub(crate) async fn quiesce(
    store: &mut Store<GuestState>,
    instance: &Instance,
    needs_reset: bool,
) -> Result<(), String> {
    let open = store.data().files.open_count();
    if open > 0 {
        let (files, them) = if open == 1 { ("file", "it") } else { ("files", "them") };
        return Err(format!(
            "the guest holds {open} {files} open; a copy could not use {them}: close {them} first"
        ));
    }
    match instance.get_typed_func::<(), ()>(&mut *store, RESET_PREOPENS) {
        Ok(reset) => reset.call_async(&mut *store, ()).await.map_err(|e| {
            format!("resetting the guest's preopen table trapped: {}", crate::module::loader::one_line(&e))
        }),
        Err(_) if needs_reset => Err(format!(
            "the module keeps a table of its mounts in its memory and names no `{WASI_LIBC_RESET}` \
             to empty it (a module built on wasi-libc needs its name section)"
        )),
        Err(_) => Ok(()),
    }
}

/// The live instance's state as a pre-initialised module built on
/// `binary`, the module the instance runs before instrumentation.
pub(crate) async fn snapshot(
    store: &mut Store<GuestState>,
    instance: Instance,
    binary: &[u8],
) -> Result<Vec<u8>, String> {
    let prepared = with_reset_export(binary)?;
    let wizer = Wizer::new();
    let (cx, instrumented) = wizer.instrument(&prepared).map_err(|e| format!("{e:#}"))?;
    // Wizer panics on an export it expects and does not find; the
    // instance must run exactly this instrumented module.
    let state = export_names(&instrumented)?;
    let expected =
        state.iter().filter(|name| name.starts_with(GLOBAL_PREFIX) || name.starts_with(MEMORY_PREFIX));
    for name in expected {
        if instance.get_export(&mut *store, name).is_none() {
            return Err(format!("the session's instance does not export `{name}`: it runs another module"));
        }
    }
    let mut state = LiveState { store, instance };
    wizer.snapshot(&cx, &mut state).await.map_err(|e| format!("{e:#}"))
}

/// The names a module exports.
pub(crate) fn export_names(binary: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(binary) {
        if let Payload::ExportSection(exports) = payload.map_err(|e| e.to_string())? {
            for export in exports {
                names.push(export.map_err(|e| e.to_string())?.name.to_owned());
            }
        }
    }
    Ok(names)
}

/// Copies every exported memory and mutable global of `from` into `to`, an
/// instance of the same instrumented module that has run nothing.
pub(crate) fn copy_state(
    from: (&mut Store<GuestState>, &Instance),
    to: (&mut Store<GuestState>, &Instance),
) -> Result<(), String> {
    let (from_store, from) = from;
    let (to_store, to) = to;
    let exports: Vec<(String, Extern)> =
        from.exports(&mut *from_store).map(|e| (e.name().to_owned(), e.into_extern())).collect();
    for (name, item) in exports {
        if name.starts_with(MEMORY_PREFIX) {
            let (Extern::Memory(source), Some(target)) = (item, to.get_memory(&mut *to_store, &name)) else {
                return Err(format!("the fork has no memory `{name}`"));
            };
            let want = source.size(&*from_store);
            let have = target.size(&*to_store);
            if want > have {
                target
                    .grow(&mut *to_store, want - have)
                    .map_err(|_| "the fork cannot grow its memory to the original's size (memory limit)")?;
            }
            let bytes = source.data(&*from_store);
            target.data_mut(&mut *to_store)[..bytes.len()].copy_from_slice(bytes);
        } else if name.starts_with(GLOBAL_PREFIX) {
            let (Extern::Global(source), Some(target)) = (item, to.get_global(&mut *to_store, &name)) else {
                return Err(format!("the fork has no global `{name}`"));
            };
            let value = source.get(&mut *from_store);
            target.set(to_store.as_context_mut(), value).map_err(|e| format!("setting `{name}`: {e}"))?;
        }
    }
    Ok(())
}

/// Wizer's view of a live instance.
struct LiveState<'a> {
    store: &'a mut Store<GuestState>,
    instance: Instance,
}

impl InstanceState for LiveState<'_> {
    async fn global_get(&mut self, name: &str, _: wasmparser::ValType) -> SnapshotVal {
        let global = self.instance.get_global(&mut *self.store, name).expect("checked before the snapshot");
        match global.get(&mut *self.store) {
            Val::I32(x) => SnapshotVal::I32(x),
            Val::I64(x) => SnapshotVal::I64(x),
            Val::F32(x) => SnapshotVal::F32(x),
            Val::F64(x) => SnapshotVal::F64(x),
            Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            // Wizer refuses mutable reference globals when it instruments.
            other => unreachable!("a mutable global of type {:?}", other.ty(&*self.store)),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        let memory = self.instance.get_memory(&mut *self.store, name).expect("checked before the snapshot");
        contents(memory.data(&*self.store))
    }
}
