//! The Wasmtime backend behind the host: a [`WasmSandbox`] serves one
//! profile, its [`WasmSession`]s are the host's sessions.

use std::time::Duration;

use mimobox_core::{ExecRequest, SandboxError, TurnRequest, TurnResult};
use mimobox_files::Listing;
use mimobox_wasm::{FileOpError, PauseBinding, WasmSandbox, WasmSession};

use crate::backend::{Backend, Binding, HostedSession};
use crate::error::HostError;

impl Backend for WasmSandbox {
    type Session = WasmSession;

    async fn open(&self) -> Result<WasmSession, SandboxError> {
        self.open_session_async(ExecRequest::default()).await
    }

    async fn resume(
        &self,
        paused: &[u8],
        key: &[u8],
        binding: &Binding,
    ) -> Result<WasmSession, SandboxError> {
        let binding = PauseBinding { session: binding.session.clone(), owner: binding.owner.clone() };
        self.resume_session_async(paused, key, &binding).await
    }

    fn timeouts(&self) -> (Duration, Duration) {
        let session = &self.config().session;
        (session.idle_timeout, session.lifetime)
    }
}

impl HostedSession for WasmSession {
    async fn turn(&mut self, request: TurnRequest) -> Result<TurnResult, SandboxError> {
        self.turn_async(request).await
    }

    async fn pause(&mut self, key: &[u8], binding: &Binding) -> Result<Vec<u8>, SandboxError> {
        let binding = PauseBinding { session: binding.session.clone(), owner: binding.owner.clone() };
        self.pause_async(key, &binding).await
    }

    async fn close(self) {
        self.close_async().await;
    }

    fn memory_in_use(&self) -> u64 {
        WasmSession::memory_in_use(self)
    }

    fn write_file(&mut self, path: &str, data: &[u8]) -> Result<u64, HostError> {
        WasmSession::write_file(self, path, data).map_err(file_error)
    }

    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, HostError> {
        WasmSession::read_file(self, path).map_err(file_error)
    }

    fn list_files(&mut self, path: &str) -> Result<Listing, HostError> {
        WasmSession::list_files(self, path).map_err(file_error)
    }
}

fn file_error(e: FileOpError) -> HostError {
    match e {
        FileOpError::Session(e) => HostError::Sandbox(e),
        FileOpError::File(e) => HostError::File(e),
        // A kind this version does not know of is the session's refusal.
        #[allow(unreachable_patterns)]
        other => HostError::Sandbox(SandboxError::Internal(other.to_string())),
    }
}
