//! The profile's preload: built once as the first turn of a fresh
//! session, snapshotted, cached; and the restore turn that gives each
//! session opened from it its own arguments, environment and randomness.

use std::sync::Arc;

use mimobox_core::{ExecRequest, ModuleSource, Outcome, SandboxError, TurnRequest, TurnResult, fill_restore};

use mimobox_cache::ContentHash;

use super::open::instrumented;
use super::{Image, WasmSession};
use crate::WasmSandbox;
use crate::exec::block_on;
use crate::module::{CompileEvent, LoadedModule, ModuleOrigin};

/// Most bytes of a `session.setup_file`.
const MAX_SETUP_FILE: u64 = 1 << 20;

impl WasmSandbox {
    /// The code of the preload: the setup file's, then `session.preload`'s;
    /// `None` when the config has neither.
    pub(super) fn preload_code(&self) -> Result<Option<String>, SandboxError> {
        let session = &self.config().session;
        let setup = match &session.setup_file {
            None => None,
            Some(path) => Some(read_setup_file(path)?),
        };
        Ok(match (setup, &session.preload) {
            (None, None) => None,
            (Some(setup), None) => Some(setup),
            (None, Some(preload)) => Some(preload.clone()),
            (Some(setup), Some(preload)) => Some(format!("{setup}\n{preload}")),
        })
    }

    /// The compiled preload checkpoint of `source`: from memory or the
    /// cache, else built by running `preload` as the first turn of a fresh
    /// session and capturing its state. Its key covers the module, the
    /// preload, what the preload saw (arguments, environment, mounts) and
    /// the engine.
    pub(super) fn preload_checkpoint(
        &self,
        source: &ModuleSource,
        preload: &str,
    ) -> Result<(Arc<LoadedModule>, ModuleOrigin, ContentHash), SandboxError> {
        let (loader, _, config) = self.parts();
        let (args, env) = self.guest_command(source, &[], &[]);
        // The preload sees the read-only mounts only (the runtime's
        // libraries, say), and the checkpoint is keyed on them; read-write
        // mounts are each session's own, so sessions with different
        // workspaces share one checkpoint and none sees another's files.
        // The key covers what the read-only mounts hold, not only where
        // they are: a file replaced or rewritten there (another tenant's
        // data, say) makes a new checkpoint rather than serving what the
        // old file produced.
        let mounts: Vec<(String, String)> =
            config.fs_readonly.iter().map(|m| (m.guest.clone(), m.host.display().to_string())).collect();
        let contents = self.read_only_fingerprint()?;
        let recipe = serde_json::json!({
            "checkpoint": "preload v2",
            "preload": preload,
            "args": args,
            "env": env,
            "read_only_mounts": mounts,
            "read_only_contents": contents,
            "workspace": config.session.workspace.is_some(),
        })
        .to_string();
        let (module, origin, base) = loader.load_derived(source, recipe.as_bytes(), |binary| {
            let (module, image, _) = self.load_for_session(source)?;
            if let Image::Plain(reason) = &image {
                return Err(SandboxError::NotCheckpointable {
                    module: source.display_name(),
                    reason: format!("it cannot be preloaded: {reason}"),
                });
            }
            // A build is rare and long: it runs as a synchronous caller,
            // on a thread of its own when the caller is inside a runtime.
            let mut session = block_on(self.start(source, module, image, ExecRequest::default(), true))??;
            loader.notify(&CompileEvent::Preloading { module: source.display_name() });
            let turn = block_on(session.turn_async(TurnRequest::new(preload)));
            loader.notify(&CompileEvent::Finished);
            let turn = turn??;
            succeeded("the preload (session.preload)", &turn)?;
            let snapshot = block_on(session.snapshot_on(binary))??;
            loader.check_checkpoint_size(&source.display_name(), snapshot.len())?;
            instrumented(&source.display_name(), &snapshot)
        })?;
        let identity = ContentHash::of(format!("{base}\0{recipe}").as_bytes());
        Ok((module, origin, identity))
    }
}

/// Refuses a hidden turn (preload or restore) that did not exit 0 with the
/// session alive, quoting the end of its stderr.
fn succeeded(what: &'static str, turn: &TurnResult) -> Result<(), SandboxError> {
    if turn.alive && turn.result.outcome == (Outcome::Exited { code: 0 }) {
        return Ok(());
    }
    let how = match &turn.result.outcome {
        Outcome::Exited { code } => format!("exited with status {code}"),
        Outcome::Trap { message } => format!("trapped: {message}"),
        other => other.name().to_owned(),
    };
    let stderr = String::from_utf8_lossy(&turn.result.stderr);
    let tail = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
    let tail = if tail.is_empty() { String::new() } else { format!(": {tail}") };
    Err(SandboxError::HiddenTurnFailed {
        what,
        how: mimobox_core::text::one_line_bounded(&format!("{how}{tail}")),
    })
}

impl WasmSession {
    /// Runs the config's `session.restore` code as an unseen turn, with
    /// this session's arguments and environment; the session's turn count
    /// starts after it.
    pub(super) async fn restore(&mut self) -> Result<(), SandboxError> {
        let Some(template) = self.sandbox.config().session.restore.clone() else { return Ok(()) };
        let (argv, env) = &self.command;
        let code = fill_restore(&template, argv, env);
        let turn = self.turn_async(TurnRequest::new(code)).await?;
        self.turns = 0;
        succeeded("the restore turn (session.restore)", &turn)
    }
}

/// The text of a setup file, bounded, or an error naming the key.
fn read_setup_file(path: &std::path::Path) -> Result<String, SandboxError> {
    use std::io::Read;
    let key = mimobox_core::keys::SESSION_SETUP_FILE;
    let problem = |what: String| mimobox_core::ConfigError::new(key, format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| problem(e.to_string()))?;
    if !file.metadata().map_err(|e| problem(e.to_string()))?.is_file() {
        return Err(problem("not a regular file".into()).into());
    }
    let mut text = String::new();
    file.take(MAX_SETUP_FILE + 1).read_to_string(&mut text).map_err(|e| problem(e.to_string()))?;
    if text.len() as u64 > MAX_SETUP_FILE {
        return Err(problem(format!("over {} bytes", MAX_SETUP_FILE)).into());
    }
    Ok(text)
}
