//! Pause and resume: a live session written out as bytes and freed, and
//! brought back later, in this process or another with the same module and
//! engine.
//!
//! The paused form:
//!
//! ```text
//! MAGIC (8) | header length (u32 LE) | header (JSON) | body length (u64 LE) | body (zstd) | HMAC-SHA256 (32)
//! ```
//!
//! The header names the format, the image the session runs (its module and
//! preload), the engine, the session's id and owner, and its turn count. The
//! body holds each memory as its size and the 4 KiB chunks that differ from
//! a fresh instance of the same image, every mutable global, and the files
//! of the session's workspace. The MAC covers everything before it, under a
//! key the caller gives: a state altered by one byte, truncated, or
//! presented for another session, owner, module or engine is refused before
//! anything of it is used. A resumed session has exactly its profile's
//! grants: the state carries memory and files, never a grant.

use std::io::Read;
use std::path::{Component, Path};

use hmac::{Hmac, Mac};
use mimobox_core::{ExecRequest, ResumeError, SandboxError};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use wasmtime::{AsContextMut, Extern, Val};

use super::{Image, WasmSession, snapshot};
use crate::WasmSandbox;
use crate::exec::{block_on, offload};

/// The first bytes of a paused session.
const MAGIC: &[u8; 8] = b"MIMOPAUS";
/// The version of the paused form.
const FORMAT: u32 = 1;
/// The granularity of the memory difference.
const CHUNK: usize = 4096;
/// Most bytes of a header.
const MAX_HEADER: usize = 64 << 10;
/// Most files of a paused workspace.
const MAX_FILES: usize = 100_000;

/// What a paused state is bound to: the session's id and its owner. A
/// state is resumed only under the same pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseBinding {
    /// The session's id.
    pub session: String,
    /// The session's owner (a tenant name).
    pub owner: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    image: String,
    engine: String,
    session: String,
    owner: String,
    turns: u64,
}

impl WasmSession {
    /// Writes this session out as bytes, bound to `binding` and
    /// authenticated with `key`, and ends it (its instance is freed when
    /// it is dropped). Refused, with the reason, when the state cannot be
    /// carried (a file held open, a module that cannot be checkpointed).
    ///
    /// Taking the difference needs a fresh instance of the same image for
    /// a moment: a pool slot besides the session's own.
    pub fn pause(&mut self, key: &[u8], binding: &PauseBinding) -> Result<Vec<u8>, SandboxError> {
        block_on(self.pause_async(key, binding))?
    }

    /// Pauses the session, as [`WasmSession::pause`] does, as a future;
    /// reading the workspace and compressing run in
    /// [`tokio::task::block_in_place`] on a multi-threaded runtime.
    pub async fn pause_async(&mut self, key: &[u8], binding: &PauseBinding) -> Result<Vec<u8>, SandboxError> {
        self.usable()?;
        let image = self.image_identity()?;
        self.quiesce().await?;
        // A fresh instance of the same image is what the difference is
        // taken against, and what a resume starts from.
        let fresh = self
            .sandbox
            .start(&self.source, self.module.clone(), self.image.clone(), ExecRequest::default(), false)
            .await?;
        let out = offload(|| self.paused_form(fresh, image, key, binding))?;
        self.ended = Some("paused".into());
        Ok(out)
    }

    /// The paused form of this quiesced session: its difference from
    /// `fresh`, its workspace files, compressed, framed and authenticated.
    fn paused_form(
        &mut self,
        mut fresh: WasmSession,
        image: String,
        key: &[u8],
        binding: &PauseBinding,
    ) -> Result<Vec<u8>, SandboxError> {
        let mut body = Vec::new();
        let exports: Vec<(String, Extern)> =
            self.instance.exports(&mut self.store).map(|e| (e.name().to_owned(), e.into_extern())).collect();
        let (mut memories, mut globals) = (Vec::new(), Vec::new());
        for (name, item) in exports {
            match item {
                Extern::Memory(memory) if name.starts_with(snapshot::MEMORY_PREFIX) => {
                    let data = memory.data(&self.store);
                    let base =
                        fresh.instance.get_memory(&mut fresh.store, &name).map(|m| m.data(&fresh.store));
                    let base = base.unwrap_or(&[]);
                    // Chunks whose pages the session never wrote are its
                    // image's (or zero) as they are, and are passed over
                    // unread: reading them would fault in both copies.
                    let untouched = crate::module::pages::untouched(data, CHUNK).unwrap_or_default();
                    let mut chunks = Vec::new();
                    for (index, chunk) in data.chunks(CHUNK).enumerate() {
                        if untouched.get(index) == Some(&true) {
                            continue;
                        }
                        let start = index * CHUNK;
                        let same = base.get(start..start + chunk.len()).is_some_and(|b| b == chunk);
                        let zero = base.len() <= start && chunk.iter().all(|b| *b == 0);
                        if !same && !zero {
                            chunks.push((index as u32, chunk.to_vec()));
                        }
                    }
                    memories.push((name, memory.size(&self.store), chunks));
                }
                Extern::Global(global) if name.starts_with(snapshot::GLOBAL_PREFIX) => {
                    globals.push((name, global.get(&mut self.store)));
                }
                _ => {}
            }
        }
        drop(fresh);
        put_u32(&mut body, globals.len() as u32);
        for (name, value) in &globals {
            put_bytes(&mut body, name.as_bytes());
            match value {
                Val::I32(x) => put_tagged(&mut body, 0, &x.to_le_bytes()),
                Val::I64(x) => put_tagged(&mut body, 1, &x.to_le_bytes()),
                Val::F32(x) => put_tagged(&mut body, 2, &x.to_le_bytes()),
                Val::F64(x) => put_tagged(&mut body, 3, &x.to_le_bytes()),
                Val::V128(x) => put_tagged(&mut body, 4, &x.as_u128().to_le_bytes()),
                _ => return Err(refused("a global of a reference type cannot be paused")),
            }
        }
        put_u32(&mut body, memories.len() as u32);
        for (name, pages, chunks) in &memories {
            put_bytes(&mut body, name.as_bytes());
            put_u64(&mut body, *pages);
            put_u32(&mut body, chunks.len() as u32);
            for (index, chunk) in chunks {
                put_u32(&mut body, *index);
                put_bytes(&mut body, chunk);
            }
        }
        let files = match &self.workspace {
            Some(workspace) => workspace_files(workspace)?,
            None => Vec::new(),
        };
        put_u32(&mut body, files.len() as u32);
        for (kind, path, data) in &files {
            body.push(*kind);
            put_bytes(&mut body, path.as_bytes());
            put_bytes(&mut body, data);
        }
        body.push(u8::from(self.initialized));
        let compressed = zstd::encode_all(&body[..], 3).map_err(|e| refused(&format!("compressing: {e}")))?;
        let (_, core, _) = self.sandbox.parts();
        let header = Header {
            format: FORMAT,
            image,
            engine: core.id.to_string(),
            session: binding.session.clone(),
            owner: binding.owner.clone(),
            turns: self.turns,
        };
        let header = serde_json::to_vec(&header).map_err(|e| refused(&e.to_string()))?;
        let mut out = Vec::with_capacity(compressed.len() + header.len() + 64);
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, header.len() as u32);
        out.extend_from_slice(&header);
        put_u64(&mut out, compressed.len() as u64);
        out.extend_from_slice(&compressed);
        let mac = mac(key, &out);
        out.extend_from_slice(&mac);
        Ok(out)
    }

    /// What this session's instance runs, as a paused state names it.
    fn image_identity(&self) -> Result<String, SandboxError> {
        match &self.image {
            Image::Preload { identity } => Ok(format!("preload {identity}")),
            Image::Module { hash } => Ok(format!("module {hash}")),
            Image::Checkpoint(_) => Err(refused(
                "a session opened from a caller's checkpoint cannot be paused; open it from its module or the profile's preload",
            )),
            Image::Plain(reason) => Err(refused(reason)),
        }
    }
}

impl WasmSandbox {
    /// Resumes a session that [`WasmSession::pause`] wrote: checks its
    /// MAC under `key`, its format, its image and engine against this
    /// sandbox's, and its binding; then starts a fresh instance, puts the
    /// paused memory, globals and workspace files back, and carries on
    /// with the next turn's number. Nothing of a refused state is used.
    pub fn resume_session(
        &self,
        paused: &[u8],
        key: &[u8],
        binding: &PauseBinding,
    ) -> Result<WasmSession, SandboxError> {
        block_on(self.resume_session_async(paused, key, binding))?
    }

    /// Resumes a paused session, as [`WasmSandbox::resume_session`] does,
    /// as a future; checking and decompressing run in
    /// [`tokio::task::block_in_place`] on a multi-threaded runtime.
    pub async fn resume_session_async(
        &self,
        paused: &[u8],
        key: &[u8],
        binding: &PauseBinding,
    ) -> Result<WasmSession, SandboxError> {
        let (header, compressed) = offload(|| open_envelope(paused, key)).map_err(resume_error)?;
        if header.format != FORMAT {
            return Err(resume_error(ResumeError::Format { found: header.format, expected: FORMAT }));
        }
        let (_, core, _) = self.parts();
        if header.engine != core.id.to_string() {
            return Err(resume_error(ResumeError::Mismatch {
                what: "engine",
                found: header.engine,
                expected: core.id.to_string(),
            }));
        }
        if header.session != binding.session || header.owner != binding.owner {
            return Err(resume_error(ResumeError::Binding));
        }
        let source = self.source_of(None)?;
        let (module, image) = match self.preload_code()? {
            Some(preload) => {
                let (module, _, identity) = self.preload_checkpoint(&source, &preload)?;
                (module, Image::Preload { identity })
            }
            None => {
                let (module, image, _) = self.load_for_session(&source)?;
                (module, image)
            }
        };
        let mut session = self.start(&source, module, image, ExecRequest::default(), false).await?;
        let expected = session.image_identity()?;
        if header.image != expected {
            return Err(resume_error(ResumeError::Mismatch {
                what: "module",
                found: header.image,
                expected,
            }));
        }
        // The body is bounded by what a session may hold: its memory and
        // its workspace, plus room for the framing.
        let config = self.config();
        let bound = config
            .memory_limit
            .saturating_add(config.session.workspace.unwrap_or(0).min(config.max_disk_write))
            .saturating_add(16 << 20);
        offload(|| {
            let mut body = Vec::new();
            zstd::Decoder::new(compressed)
                .and_then(|decoder| decoder.take(bound + 1).read_to_end(&mut body))
                .map_err(|_| resume_error(ResumeError::Malformed))?;
            if body.len() as u64 > bound {
                return Err(resume_error(ResumeError::Beyond(
                    "holds more than this profile's session may".into(),
                )));
            }
            session.apply(&body).map_err(|e| match e {
                Applied::Malformed => resume_error(ResumeError::Malformed),
                Applied::Refused(reason) => resume_error(ResumeError::Beyond(reason)),
            })
        })?;
        session.turns = header.turns;
        Ok(session)
    }
}

/// Why a body could not be applied.
enum Applied {
    Malformed,
    Refused(String),
}

impl WasmSession {
    /// Puts a paused body's memories, globals and files into this fresh
    /// session.
    fn apply(&mut self, body: &[u8]) -> Result<(), Applied> {
        let mut reader = Reader { bytes: body };
        let globals = reader.u32()?;
        for _ in 0..globals {
            let name = reader.string()?;
            let tag = reader.u8()?;
            let value = match tag {
                0 => Val::I32(i32::from_le_bytes(reader.array()?)),
                1 => Val::I64(i64::from_le_bytes(reader.array()?)),
                2 => Val::F32(u32::from_le_bytes(reader.array()?)),
                3 => Val::F64(u64::from_le_bytes(reader.array()?)),
                4 => Val::V128(u128::from_le_bytes(reader.array()?).into()),
                _ => return Err(Applied::Malformed),
            };
            let Some(global) = self.instance.get_global(&mut self.store, &name) else {
                return Err(Applied::Refused(format!("the module has no global `{name}`")));
            };
            global
                .set(self.store.as_context_mut(), value)
                .map_err(|e| Applied::Refused(format!("setting `{name}`: {e}")))?;
        }
        let memories = reader.u32()?;
        for _ in 0..memories {
            let name = reader.string()?;
            let pages = reader.u64()?;
            let Some(memory) = self.instance.get_memory(&mut self.store, &name) else {
                return Err(Applied::Refused(format!("the module has no memory `{name}`")));
            };
            let have = memory.size(&self.store);
            if pages > have {
                memory.grow(&mut self.store, pages - have).map_err(|_| {
                    Applied::Refused("the paused memory is over this profile's memory limit".into())
                })?;
            }
            let chunks = reader.u32()?;
            let data = memory.data_mut(&mut self.store);
            for _ in 0..chunks {
                let index = reader.u32()? as usize;
                let chunk = reader.bytes()?;
                let start = index.checked_mul(CHUNK).ok_or(Applied::Malformed)?;
                let target = data.get_mut(start..start + chunk.len()).ok_or(Applied::Malformed)?;
                if chunk.len() > CHUNK {
                    return Err(Applied::Malformed);
                }
                target.copy_from_slice(chunk);
            }
        }
        let files = reader.u32()? as usize;
        if files > MAX_FILES {
            return Err(Applied::Malformed);
        }
        let mut written = 0u64;
        for _ in 0..files {
            let kind = reader.u8()?;
            let path = reader.string()?;
            let data = reader.bytes()?;
            let Some(workspace) = &self.workspace else {
                return Err(Applied::Refused(
                    "the paused state has files, and this profile no workspace".into(),
                ));
            };
            written += data.len() as u64;
            restore_file(workspace, kind, &path, data).map_err(Applied::Refused)?;
        }
        self.store.data_mut().files.spend(written);
        self.initialized = reader.u8()? != 0;
        if !reader.bytes.is_empty() {
            return Err(Applied::Malformed);
        }
        Ok(())
    }
}

/// The files of a workspace (`workspace/` and `tmp/`), as (kind, relative
/// path, content or link target): 0 a file, 1 a directory, 2 a symlink.
fn workspace_files(workspace: &mimobox_files::Workspace) -> Result<Vec<(u8, String, Vec<u8>)>, SandboxError> {
    let mut files = Vec::new();
    for (top, dir) in [("workspace", workspace.workspace_dir()), ("tmp", workspace.tmp_dir())] {
        walk(dir, top, &mut files).map_err(|e| refused(&format!("reading the workspace: {e}")))?;
    }
    Ok(files)
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<(u8, String, Vec<u8>)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if files.len() >= MAX_FILES {
            return Err(std::io::Error::other("more than 100000 files"));
        }
        let name =
            entry.file_name().into_string().map_err(|_| std::io::Error::other("a name that is not UTF-8"))?;
        let path = format!("{prefix}/{name}");
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            files.push((2, path, target.into_os_string().into_encoded_bytes()));
        } else if kind.is_dir() {
            files.push((1, path.clone(), Vec::new()));
            walk(&entry.path(), &path, files)?;
        } else if kind.is_file() {
            files.push((0, path, std::fs::read(entry.path())?));
        }
        // Anything else (the guest cannot make one) is not carried.
    }
    Ok(())
}

/// Puts one paused entry back into a fresh workspace, refusing any path or
/// link target that could leave it.
fn restore_file(
    workspace: &mimobox_files::Workspace,
    kind: u8,
    path: &str,
    data: &[u8],
) -> Result<(), String> {
    let (top, rest) = path.split_once('/').ok_or("a paused file outside the workspace")?;
    let root = match top {
        "workspace" => workspace.workspace_dir(),
        "tmp" => workspace.tmp_dir(),
        _ => return Err("a paused file outside the workspace".into()),
    };
    let relative = Path::new(rest);
    if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "a paused file with an unsafe path: {}",
            mimobox_core::text::one_line_bounded(path)
        ));
    }
    let target = root.join(relative);
    let outcome = match kind {
        0 => std::fs::write(&target, data),
        1 => std::fs::create_dir(&target),
        2 => {
            let link = String::from_utf8_lossy(data);
            if !crate::guest::wasi_rules::link_target_allowed(&link) {
                return Err("a paused symlink that leaves the workspace".into());
            }
            std::os::unix::fs::symlink(&*link, &target)
        }
        _ => return Err("a paused entry of an unknown kind".into()),
    };
    outcome.map_err(|e| format!("restoring {}: {e}", mimobox_core::text::one_line_bounded(path)))
}

/// The header and compressed body of a paused state whose MAC holds.
fn open_envelope<'a>(paused: &'a [u8], key: &[u8]) -> Result<(Header, &'a [u8]), ResumeError> {
    if paused.len() < MAGIC.len() + 4 + 8 + 32 || &paused[..MAGIC.len()] != MAGIC {
        return Err(ResumeError::Malformed);
    }
    let (signed, tag) = paused.split_at(paused.len() - 32);
    let mut check = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| ResumeError::Unauthenticated)?;
    check.update(signed);
    check.verify_slice(tag).map_err(|_| ResumeError::Unauthenticated)?;
    let mut reader = Reader { bytes: &signed[MAGIC.len()..] };
    let header_len = reader.u32().map_err(|_| ResumeError::Malformed)? as usize;
    if header_len > MAX_HEADER {
        return Err(ResumeError::Malformed);
    }
    let header = reader.take(header_len).map_err(|_| ResumeError::Malformed)?;
    let header: Header = serde_json::from_slice(header).map_err(|_| ResumeError::Malformed)?;
    let body_len = reader.u64().map_err(|_| ResumeError::Malformed)? as usize;
    let body = reader.take(body_len).map_err(|_| ResumeError::Malformed)?;
    if !reader.bytes.is_empty() {
        return Err(ResumeError::Malformed);
    }
    Ok((header, body))
}

fn mac(key: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

fn refused(reason: &str) -> SandboxError {
    SandboxError::NotPausable { reason: mimobox_core::text::one_line_bounded(reason) }
}

fn resume_error(e: ResumeError) -> SandboxError {
    SandboxError::Resume(e)
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_tagged(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(bytes);
}

/// Reads a body or header, every length checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Applied> {
        if n > self.bytes.len() {
            return Err(Applied::Malformed);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Applied> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, Applied> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Applied> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Applied> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Applied> {
        let len = usize::try_from(self.u64()?).map_err(|_| Applied::Malformed)?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, Applied> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Applied::Malformed)
    }
}
