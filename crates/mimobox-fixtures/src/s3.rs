//! A real S3 service of a test's own: s3s's file-system implementation
//! (`s3s-fs`, the server s3s tests itself with against the AWS SDK), with
//! signature checking on, served on a free loopback port from a thread of
//! the test's process, over a temporary directory. Stopped when dropped.
//!
//! It speaks S3's HTTP protocol and checks every request's SigV4
//! signature, so the client under test (`object_store`, in the workers)
//! runs exactly as against any other S3 service.

use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::TokioIo;

/// The access key the service accepts.
pub const ACCESS_KEY: &str = "mimobox-test";
/// The secret key the service accepts.
pub const SECRET_KEY: &str = "mimobox-test-secret-key-0123456789";

/// A running S3 service, with one bucket.
pub struct S3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket that exists.
    pub bucket: String,
    root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3 {
    /// Starts one with the bucket `bucket`.
    ///
    /// # Panics
    /// If the port, the directory or the runtime cannot be had.
    pub fn start(bucket: &str) -> S3 {
        let root = tempfile::tempdir().expect("a directory for the S3 service");
        std::fs::create_dir(root.path().join(bucket)).expect("the bucket's directory");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs over the directory");
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            Arc::new(builder.build())
        };
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("s3-service".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the S3 service's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        let socket = tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok((socket, _)) => socket,
                                Err(_) => continue,
                            },
                            _ = &mut stopped => return,
                        };
                        let service = service.clone();
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(socket), service.as_ref().clone())
                                .await;
                        });
                    }
                });
            })
            .expect("the S3 service's thread");
        S3 { endpoint, bucket: bucket.to_owned(), root, stop: Some(stop), thread: Some(thread) }
    }

    /// The variables that point the AWS tools (and mimobox's store) at
    /// this service.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// The file that holds `key` of the bucket, for a test that tampers
    /// with an object behind the service's back.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(&self.bucket).join(key)
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
