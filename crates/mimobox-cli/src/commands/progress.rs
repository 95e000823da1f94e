//! A progress line for long compiles, on a terminal only.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mimobox_core::text::one_line_bounded;
use mimobox_core::units::DisplaySize;
use mimobox_wasm::{CompileEvent, WasmSandbox};

/// Compiles shorter than this show nothing.
const QUIET_FOR: Duration = Duration::from_millis(500);
const REFRESH: Duration = Duration::from_millis(100);

/// Shows "compiling NAME (SIZE)… 1.2s" on stderr while a compile that has
/// run longer than half a second goes on, and erases it when it ends.
/// Callers attach it only when stderr is a terminal.
pub fn attach(sandbox: &WasmSandbox) {
    let current: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>> = Mutex::new(None);
    sandbox.on_compile(move |event| {
        let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            CompileEvent::Started { .. } | CompileEvent::Preloading { .. } => {
                if let Some(label) = label(event) {
                    *current = Some(start(label));
                }
            }
            CompileEvent::Finished => {
                // Wait for the line to be erased, so that guest output never
                // lands on the end of it.
                if let Some((done, display)) = current.take() {
                    done.store(true, Ordering::SeqCst);
                    display.thread().unpark();
                    let _ = display.join();
                }
            }
            _ => {}
        }
    });
}

/// Starts the line's display thread.
fn start(label: String) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    (done, std::thread::spawn(move || show(&flag, &label)))
}

/// The line shown while `event` goes on. The module's name may hold any
/// bytes (escape sequences, say): it is escaped and bounded like every
/// other name in a host message.
fn label(event: &CompileEvent) -> Option<String> {
    let text = match event {
        CompileEvent::Started { module, bytes } => {
            format!("compiling {} ({})", file_name(module), DisplaySize(*bytes))
        }
        CompileEvent::Preloading { module } => {
            format!("running the session preload of {}", file_name(module))
        }
        _ => return None,
    };
    Some(one_line_bounded(&text))
}

fn file_name(module: &str) -> String {
    std::path::Path::new(module).file_name().map_or(module.into(), |n| n.to_string_lossy()).into_owned()
}

fn show(done: &AtomicBool, label: &str) {
    let started = Instant::now();
    let mut shown = false;
    while !done.load(Ordering::SeqCst) {
        let elapsed = started.elapsed();
        if elapsed >= QUIET_FOR {
            eprint!("\rmimobox: {label}… {:.1}s", elapsed.as_secs_f64());
            let _ = std::io::stderr().flush();
            shown = true;
        }
        std::thread::park_timeout(REFRESH);
    }
    if shown {
        eprint!("\r\x1b[K");
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_escape_the_module_name() {
        let name = "/tmp/evil\x1b]0;owned\x07\r\x1b[2Kmimobox: all good\x1b[8m.wasm";
        for event in [
            CompileEvent::Started { module: name.into(), bytes: 26 << 20 },
            CompileEvent::Preloading { module: name.into() },
        ] {
            let line = label(&event).unwrap();
            assert!(!line.chars().any(char::is_control), "{line:?}");
            assert!(line.contains("evil\\u{1b}]0;owned"), "{line:?}");
        }
    }
}
