//! The WASI calls mimobox checks before Wasmtime's own implementation runs
//! them: the rules that WASI preview 1 itself does not have.
//!
//! Each shadowed function reads what it needs from the guest's arguments,
//! refuses what breaks a rule with an errno (the guest is never killed for
//! asking), and otherwise calls Wasmtime's implementation unchanged. Only
//! file, poll and socket calls are shadowed, so a run that touches no file
//! pays nothing for them.
//!
//! - **Symlinks** (`path_symlink`): the target must be relative and free of
//!   `..`, so a link points beneath its own directory wherever it is
//!   created or later renamed to, and never out of its mount. `EPERM`.
//! - **Special files** (`path_open`): FIFOs, sockets and devices are not
//!   opened; opening a FIFO with no writer would block the host thread
//!   past any timeout. `EACCES`.
//! - **Open files** (`path_open`, `fd_close`, `fd_renumber`): at most
//!   `max_open_files` at once. `EMFILE`.
//! - **Disk writes** (`fd_write`, `fd_pwrite`, `fd_filestat_set_size`,
//!   `path_open` with `O_CREAT`, `path_create_directory`, `path_symlink`,
//!   `path_link`): at most `max_disk_write` bytes per run, or per session
//!   (all its turns together). `ENOSPC`.
//! - **Poll size** (`poll_oneoff`): at most [`MAX_POLL_SUBSCRIPTIONS`], so
//!   one call cannot make the host allocate without bound. `EINVAL`.
//! - **Sockets** (`sock_*`): refused quietly; Wasmtime's own versions log a
//!   warning per call, which would let a guest flood the host's log.

use std::collections::HashSet;

use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::types::{Errno, Fd, Filetype, Lookupflags};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as abi;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wiggle::{GuestMemory, GuestPtr};

use crate::guest::state::GuestState;

/// Most subscriptions one `poll_oneoff` call may pass. The host allocates
/// a few hundred bytes per subscription; a program polls at most two per
/// open file, so this leaves room for far more files than
/// [`mimobox_core::DEFAULT_MAX_OPEN_FILES`].
pub(crate) const MAX_POLL_SUBSCRIPTIONS: u32 = 4096;
/// What a created file, directory or link is charged against the disk
/// quota, for the inode and block it takes.
pub(crate) const ENTRY_CHARGE: u64 = 4096;
/// Longest symlink target a guest may create.
const MAX_LINK_TARGET: u32 = 4096;
/// Most buffers one write to a file may pass, as Linux's `IOV_MAX`; the
/// quota check walks them on the host before the write.
const MAX_IOVECS: i32 = 1024;

/// The per-run state of the rules: the files the guest opened and its disk
/// quota.
#[derive(Debug)]
pub(crate) struct FileGuard {
    /// Descriptors the guest opened with `path_open` and has not closed.
    open: HashSet<u32>,
    max_open: usize,
    disk_left: u64,
    disk_written: u64,
    quota_hit: bool,
}

impl FileGuard {
    pub(crate) fn new(max_open_files: u32, max_disk_write: u64) -> FileGuard {
        FileGuard {
            open: HashSet::new(),
            max_open: max_open_files as usize,
            disk_left: max_disk_write,
            disk_written: 0,
            quota_hit: false,
        }
    }

    /// Starts a session's next turn. The disk quota is the session's, not
    /// the turn's: what earlier turns wrote stays spent, so no number of
    /// turns writes more than `max_disk_write` in all. Only the turn's own
    /// measures start again; open files stay.
    pub(crate) fn new_turn(&mut self) {
        self.disk_written = 0;
        self.quota_hit = false;
    }

    /// Files the guest holds open (stdio and mounts not counted).
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Bytes written to read-write mounts so far.
    pub(crate) fn disk_written(&self) -> u64 {
        self.disk_written
    }

    /// Whether a write was refused for the quota.
    pub(crate) fn quota_hit(&self) -> bool {
        self.quota_hit
    }

    /// What is left of the session's disk quota.
    pub(crate) fn disk_left(&self) -> u64 {
        self.disk_left
    }

    /// Takes `bytes` that the host wrote for the session (a file
    /// operation, checked against [`FileGuard::disk_left`] first) from the
    /// quota.
    pub(crate) fn spend(&mut self, bytes: u64) {
        self.disk_left = self.disk_left.saturating_sub(bytes);
    }

    /// Takes `bytes` from the quota, or records that it ran out.
    fn charge(&mut self, bytes: u64) -> Result<(), Errno> {
        if bytes > self.disk_left {
            self.quota_hit = true;
            return Err(Errno::Nospc);
        }
        self.disk_left -= bytes;
        self.disk_written += bytes;
        Ok(())
    }
}

fn errno(e: Errno) -> i32 {
    e as i32
}

/// The guest's memory as bytes and as wiggle's view, and the store's data.
/// Guests without an exported memory cannot make these calls at all, as in
/// Wasmtime's own glue.
fn split<'a>(
    caller: &'a mut Caller<'_, GuestState>,
) -> wasmtime::Result<(GuestMemory<'a>, &'a mut GuestState)> {
    let fuel = wasmtime::AsContextMut::as_context_mut(&mut *caller).hostcall_fuel();
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("missing required memory export");
    };
    let (bytes, state) = memory.data_and_store_mut(caller);
    state.wasi.set_hostcall_fuel(fuel);
    Ok((GuestMemory::Unshared(bytes), state))
}

fn read_u32(memory: &GuestMemory<'_>, at: u32) -> Option<u32> {
    memory.read(GuestPtr::<u32>::new(at)).ok()
}

fn guest_str<'m>(memory: &'m GuestMemory<'_>, ptr: u32, len: u32) -> Option<std::borrow::Cow<'m, str>> {
    memory.as_cow_str(GuestPtr::<str>::new((ptr, len))).ok()
}

/// Whether a symlink with this target stays beneath the directory it is
/// created in, wherever that directory is: relative, and no `..`.
pub(crate) fn link_target_allowed(target: &str) -> bool {
    !target.is_empty() && !target.starts_with('/') && !target.split('/').any(|part| part == "..")
}

/// Adds the checked versions of the shadowed WASI functions to `linker`,
/// over Wasmtime's own.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.allow_shadowing(true);

    linker.func_wrap_async(
        M,
        "path_open",
        |mut caller: Caller<'_, GuestState>,
         (fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, out): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            Box::new(async move {
                let (mut memory, state) = split(&mut caller)?;
                if state.files.open.len() >= state.files.max_open {
                    return Ok(errno(Errno::Mfile));
                }
                // What is there now decides: a special file is refused before
                // anything opens it, and creating a file costs quota.
                let flags = Lookupflags::from_bits_truncate(dirflags as u32);
                let stat = state
                    .wasi
                    .path_filestat_get(
                        &mut memory,
                        Fd::from(fd as u32),
                        flags,
                        GuestPtr::new((path as u32, path_len as u32)),
                    )
                    .await;
                let creates = match &stat {
                    Ok(stat) => {
                        if !matches!(
                            stat.filetype,
                            Filetype::RegularFile | Filetype::Directory | Filetype::SymbolicLink
                        ) {
                            return Ok(errno(Errno::Acces));
                        }
                        false
                    }
                    Err(_) => oflags & 1 != 0,
                };
                if creates && let Err(e) = state.files.charge(ENTRY_CHARGE) {
                    return Ok(errno(e));
                }
                let result = abi::path_open(
                    &mut state.wasi,
                    &mut memory,
                    fd,
                    dirflags,
                    path,
                    path_len,
                    oflags,
                    base,
                    inheriting,
                    fdflags,
                    out,
                )
                .await?;
                if result == 0
                    && let Some(opened) = read_u32(&memory, out as u32)
                {
                    state.files.open.insert(opened);
                }
                Ok(result)
            })
        },
    )?;

    linker.func_wrap_async(M, "fd_close", |mut caller: Caller<'_, GuestState>, (fd,): (i32,)| {
        Box::new(async move {
            let (mut memory, state) = split(&mut caller)?;
            let result = abi::fd_close(&mut state.wasi, &mut memory, fd).await?;
            if result == 0 {
                state.files.open.remove(&(fd as u32));
            }
            Ok(result)
        })
    })?;

    linker.func_wrap_async(
        M,
        "fd_renumber",
        |mut caller: Caller<'_, GuestState>, (from, to): (i32, i32)| {
            Box::new(async move {
                let (mut memory, state) = split(&mut caller)?;
                let result = abi::fd_renumber(&mut state.wasi, &mut memory, from, to).await?;
                if result == 0 && from != to {
                    let moved = state.files.open.remove(&(from as u32));
                    state.files.open.remove(&(to as u32));
                    if moved {
                        state.files.open.insert(to as u32);
                    }
                }
                Ok(result)
            })
        },
    )?;

    linker.func_wrap_async(
        M,
        "path_symlink",
        |mut caller: Caller<'_, GuestState>, (old, old_len, fd, new, new_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut memory, state) = split(&mut caller)?;
                if old_len as u32 > MAX_LINK_TARGET {
                    return Ok(errno(Errno::Nametoolong));
                }
                match guest_str(&memory, old as u32, old_len as u32) {
                    Some(target) if link_target_allowed(&target) => {}
                    Some(_) => return Ok(errno(Errno::Perm)),
                    None => return Ok(errno(Errno::Fault)),
                }
                if let Err(e) = state.files.charge(ENTRY_CHARGE) {
                    return Ok(errno(e));
                }
                abi::path_symlink(&mut state.wasi, &mut memory, old, old_len, fd, new, new_len).await
            })
        },
    )?;

    linker.func_wrap_async(
        M,
        "path_create_directory",
        |mut caller: Caller<'_, GuestState>, (fd, path, len): (i32, i32, i32)| {
            Box::new(async move {
                let (mut memory, state) = split(&mut caller)?;
                if let Err(e) = state.files.charge(ENTRY_CHARGE) {
                    return Ok(errno(e));
                }
                abi::path_create_directory(&mut state.wasi, &mut memory, fd, path, len).await
            })
        },
    )?;

    linker.func_wrap_async(
        M,
        "path_link",
        |mut caller: Caller<'_, GuestState>,
         (old_fd, flags, old, old_len, new_fd, new, new_len): (i32, i32, i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut memory, state) = split(&mut caller)?;
                if let Err(e) = state.files.charge(ENTRY_CHARGE) {
                    return Ok(errno(e));
                }
                abi::path_link(
                    &mut state.wasi,
                    &mut memory,
                    old_fd,
                    flags,
                    old,
                    old_len,
                    new_fd,
                    new,
                    new_len,
                )
                .await
            })
        },
    )?;

    linker.func_wrap_async(
        M,
        "fd_write",
        |mut caller: Caller<'_, GuestState>, (fd, iovs, iovs_len, out): (i32, i32, i32, i32)| {
            Box::new(async move { quota_write(&mut caller, fd, iovs, iovs_len, None, out).await })
        },
    )?;

    linker.func_wrap_async(
        M,
        "fd_pwrite",
        |mut caller: Caller<'_, GuestState>, (fd, iovs, iovs_len, offset, out): (i32, i32, i32, i64, i32)| {
            Box::new(async move { quota_write(&mut caller, fd, iovs, iovs_len, Some(offset), out).await })
        },
    )?;

    linker.func_wrap_async(
        M,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, GuestState>, (fd, size): (i32, i64)| {
            Box::new(async move {
                let (mut memory, state) = split(&mut caller)?;
                let mut growth = 0;
                if state.files.open.contains(&(fd as u32)) {
                    let current = match state.wasi.fd_filestat_get(&mut memory, Fd::from(fd as u32)).await {
                        Ok(stat) => stat.size,
                        Err(_) => 0,
                    };
                    growth = (size as u64).saturating_sub(current);
                    if growth > state.files.disk_left {
                        state.files.quota_hit = true;
                        return Ok(errno(Errno::Nospc));
                    }
                }
                let result = abi::fd_filestat_set_size(&mut state.wasi, &mut memory, fd, size).await?;
                if result == 0 {
                    let _ = state.files.charge(growth);
                }
                Ok(result)
            })
        },
    )?;

    linker.func_wrap_async(
        M,
        "poll_oneoff",
        |mut caller: Caller<'_, GuestState>, (input, output, count, out): (i32, i32, i32, i32)| {
            Box::new(async move {
                if count as u32 > MAX_POLL_SUBSCRIPTIONS {
                    return Ok(errno(Errno::Inval));
                }
                let (mut memory, state) = split(&mut caller)?;
                abi::poll_oneoff(&mut state.wasi, &mut memory, input, output, count, out).await
            })
        },
    )?;

    // The socket calls of preview 1 have nothing behind them here: no
    // descriptor is ever a socket. Answer as Wasmtime does, without its log
    // line per call.
    linker.func_wrap_async(
        M,
        "sock_accept",
        |mut caller: Caller<'_, GuestState>, (fd, _, _): (i32, i32, i32)| {
            Box::new(async move { not_a_socket(&mut caller, fd).await })
        },
    )?;
    linker.func_wrap_async(
        M,
        "sock_recv",
        |mut caller: Caller<'_, GuestState>, (fd, _, _, _, _, _): (i32, i32, i32, i32, i32, i32)| {
            Box::new(async move { not_a_socket(&mut caller, fd).await })
        },
    )?;
    linker.func_wrap_async(
        M,
        "sock_send",
        |mut caller: Caller<'_, GuestState>, (fd, _, _, _, _): (i32, i32, i32, i32, i32)| {
            Box::new(async move { not_a_socket(&mut caller, fd).await })
        },
    )?;
    linker.func_wrap_async(
        M,
        "sock_shutdown",
        |mut caller: Caller<'_, GuestState>, (fd, _): (i32, i32)| {
            Box::new(async move { not_a_socket(&mut caller, fd).await })
        },
    )?;

    linker.allow_shadowing(false);
    Ok(())
}

/// What a socket call on `fd` returns: `EBADF` for no descriptor, else
/// `ENOTSOCK`.
async fn not_a_socket(caller: &mut Caller<'_, GuestState>, fd: i32) -> wasmtime::Result<i32> {
    let (mut memory, state) = split(caller)?;
    Ok(match state.wasi.fd_fdstat_get(&mut memory, Fd::from(fd as u32)).await {
        Ok(_) => errno(Errno::Notsock),
        Err(_) => errno(Errno::Badf),
    })
}

/// `fd_write` and `fd_pwrite` under the disk quota. Writes to files the
/// guest opened are charged; stdio is not. A write that would cross the
/// quota is cut short to what is left (a short write, as a full disk
/// gives), and the next one fails with `ENOSPC`.
async fn quota_write(
    caller: &mut Caller<'_, GuestState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: Option<i64>,
    out: i32,
) -> wasmtime::Result<i32> {
    let (mut memory, state) = split(caller)?;
    let charged = state.files.open.contains(&(fd as u32));
    if charged && !(0..=MAX_IOVECS).contains(&iovs_len) {
        return Ok(errno(Errno::Inval));
    }
    // Wasmtime writes only the first non-empty buffer per call; find it.
    let mut cut = None;
    if charged {
        let left = state.files.disk_left;
        for i in 0..iovs_len as u32 {
            let entry = (iovs as u32).wrapping_add(i.wrapping_mul(8));
            let Some(len) = read_u32(&memory, entry.wrapping_add(4)) else { break };
            if len == 0 {
                continue;
            }
            if u64::from(len) > left {
                if left == 0 {
                    state.files.quota_hit = true;
                    return Ok(errno(Errno::Nospc));
                }
                cut = Some((entry.wrapping_add(4), len));
            }
            break;
        }
    }
    // Cut the buffer to what the quota leaves for the length of this call;
    // the guest cannot see it, as it is waiting for the call to return.
    if let Some((at, _)) = cut {
        let _ = memory.write(GuestPtr::<u32>::new(at), state.files.disk_left as u32);
    }
    let result = match offset {
        None => abi::fd_write(&mut state.wasi, &mut memory, fd, iovs, iovs_len, out).await,
        Some(offset) => abi::fd_pwrite(&mut state.wasi, &mut memory, fd, iovs, iovs_len, offset, out).await,
    };
    if let Some((at, len)) = cut {
        let _ = memory.write(GuestPtr::<u32>::new(at), len);
        state.files.quota_hit = true;
    }
    let result = result?;
    if charged
        && result == 0
        && let Some(written) = read_u32(&memory, out as u32)
    {
        let _ = state.files.charge(u64::from(written));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_stay_beneath_their_directory() {
        for good in ["a", "a/b", "./a", "a.txt", "..a", "a/..b"] {
            assert!(link_target_allowed(good), "{good}");
        }
        for bad in ["", "/", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "a/../b"] {
            assert!(!link_target_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn quota_refuses_past_the_limit_and_remembers() {
        let mut guard = FileGuard::new(8, 10);
        guard.charge(6).unwrap();
        assert_eq!(guard.charge(5), Err(Errno::Nospc));
        assert!(guard.quota_hit());
        guard.charge(4).unwrap();
        assert_eq!(guard.disk_written(), 10);
    }

    #[test]
    fn a_new_turn_does_not_refill_the_quota() {
        let mut guard = FileGuard::new(8, 10);
        guard.charge(10).unwrap();
        guard.new_turn();
        assert_eq!((guard.disk_written(), guard.quota_hit()), (0, false), "the turn's own measures");
        assert_eq!(guard.charge(1), Err(Errno::Nospc), "what earlier turns wrote stays spent");
        assert!(guard.quota_hit());
    }
}
