//! Paused sessions in an S3-compatible object store: [`S3Store`], the
//! fleet's [`PausedStore`] when the workers share a bucket rather than a
//! directory.
//!
//! One object per [`StateName`], at `PREFIX/NAME.paused`. A pause writes a
//! name of its own (fencing epoch and pause number in it), so the store
//! never needs a conditional write: a worker that lost a session writes a
//! name nobody will read, and never over the current state. Objects are
//! authenticated by the host, so a bucket that is altered, or a service
//! that answers with another object, gets its state refused, not resumed;
//! what the store must be trusted with is keeping objects, and their
//! confidentiality (the state is the guest's memory, not encrypted by
//! mimobox: use the service's encryption at rest and TLS).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mimobox_core::text::one_line_bounded;
use mimobox_host::{BoxFuture, PausedStore, StateName, StoreError};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

/// The longest a single request to the store may take, retries apart.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a connection to the store may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of a failed request: few and short, since a turn may wait on
/// them (a session resumed from the store).
const RETRIES: usize = 3;
/// The longest the retries of one request may take in all.
const RETRY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where in object storage the paused sessions are: `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The prefix of every object, without leading or trailing `/`; may
    /// be empty.
    pub prefix: String,
}

impl std::str::FromStr for S3Location {
    type Err = String;

    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`. The bucket follows S3's
    /// naming rules (3 to 63 of `a-z 0-9 . -`, starting and ending with a
    /// letter or digit); the prefix is segments of `A-Z a-z 0-9 . _ -`
    /// separated by single `/`, none of them `.` or `..`.
    fn from_str(url: &str) -> Result<S3Location, String> {
        let rest = url.strip_prefix("s3://").ok_or("an S3 store is `s3://BUCKET/PREFIX`")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !(3..=63).contains(&bucket.len())
            || !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            || !edge(bucket.as_bytes().first())
            || !edge(bucket.as_bytes().last())
            || bucket.contains("..")
        {
            return Err(
                "the bucket is 3 to 63 of `a-z 0-9 . -`, starting and ending with a letter or digit".into()
            );
        }
        if !prefix.is_empty() {
            for segment in prefix.split('/') {
                if segment.is_empty()
                    || segment == "."
                    || segment == ".."
                    || !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    return Err("the prefix is segments of `A-Z a-z 0-9 . _ -` between single `/`".into());
                }
            }
        }
        Ok(S3Location { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            prefix => write!(f, "s3://{}/{prefix}", self.bucket),
        }
    }
}

/// Paused sessions in an S3 bucket, under a prefix. Requests are bounded
/// in time (a 5 s connect, a 30 s request, three retries within 15 s) and
/// an object larger than the store's bound is refused before its body is
/// read (and again while it is read, whatever the service declared).
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    store: AmazonS3,
    location: S3Location,
    max_object: u64,
}

impl S3Store {
    /// A store at `location`, configured as the AWS tools are: endpoint,
    /// region and credentials from the standard variables
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, a web identity or the
    /// instance's metadata). A plain `http://` endpoint is refused unless
    /// `AWS_ALLOW_HTTP=true` says it is meant: paused states are a guest's
    /// memory.
    ///
    /// Keys may also come from a file, as the AWS tools take them: when
    /// `AWS_ACCESS_KEY_ID` is not set and `AWS_SHARED_CREDENTIALS_FILE` is,
    /// its profile `AWS_PROFILE` (or `default`) gives
    /// `aws_access_key_id`, `aws_secret_access_key` and
    /// `aws_session_token`, so that a deployment can keep its secrets in
    /// files rather than in the environment.
    pub fn from_env(location: S3Location, max_object: u64) -> Result<S3Store, StoreError> {
        let mut builder = AmazonS3Builder::from_env();
        if builder.get_config_value(&AmazonS3ConfigKey::AccessKeyId).is_none()
            && let Some(file) = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        {
            let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
            let file = std::path::PathBuf::from(file);
            let keys = shared_credentials(&file, &profile).map_err(|problem| StoreError::Service {
                action: "reading the credentials of",
                object: location.to_string(),
                problem: one_line_bounded(&format!("{}: {problem}", file.display())),
            })?;
            builder =
                builder.with_access_key_id(keys.access_key_id).with_secret_access_key(keys.secret_access_key);
            if let Some(token) = keys.session_token {
                builder = builder.with_token(token);
            }
        }
        S3Store::with_builder(builder, location, max_object)
    }

    /// A store at `location`, configured by `builder` (the bucket is set
    /// from `location`), with the same bounds and the same refusal of a
    /// plain `http://` endpoint not explicitly allowed.
    pub fn with_builder(
        builder: AmazonS3Builder,
        location: S3Location,
        max_object: u64,
    ) -> Result<S3Store, StoreError> {
        let refused = |problem: String| StoreError::Service {
            action: "configuring",
            object: location.to_string(),
            problem: one_line_bounded(&problem),
        };
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint).unwrap_or_default();
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if endpoint.starts_with("http://") && !allow_http {
            return Err(refused(format!(
                "the endpoint {endpoint} is plain http, and paused sessions would cross the network \
                 in the clear; set AWS_ALLOW_HTTP=true if that is meant"
            )));
        }
        // The bounds are set where the environment did not set them, so
        // that its other client settings (a proxy, say) still hold.
        let mut builder = builder;
        for (key, bound) in
            [(ClientConfigKey::Timeout, REQUEST_TIMEOUT), (ClientConfigKey::ConnectTimeout, CONNECT_TIMEOUT)]
        {
            let key = AmazonS3ConfigKey::Client(key);
            if builder.get_config_value(&key).is_none() {
                builder = builder.with_config(key, format!("{}s", bound.as_secs()));
            }
        }
        let retry = RetryConfig { max_retries: RETRIES, retry_timeout: RETRY_TIMEOUT, ..Default::default() };
        let store = builder
            .with_bucket_name(&location.bucket)
            .with_retry(retry)
            .build()
            .map_err(|e| refused(e.to_string()))?;
        Ok(S3Store { inner: Arc::new(Inner { store, location, max_object }) })
    }
}

/// Keys read from a shared credentials file.
struct Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// The longest credentials file read.
const MAX_CREDENTIALS_FILE: u64 = 64 << 10;

/// The keys of `profile` in the AWS shared credentials file at `path`
/// (INI: `[profile]` sections of `key = value` lines, `#` and `;`
/// comments).
fn shared_credentials(path: &std::path::Path, profile: &str) -> Result<Keys, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_CREDENTIALS_FILE + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_CREDENTIALS_FILE {
        return Err(format!("over {MAX_CREDENTIALS_FILE} bytes"));
    }
    let (mut section, mut found) = (None::<&str>, false);
    let (mut id, mut secret, mut token) = (None, None, None);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            section = Some(name.trim());
            found |= section == Some(profile);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not `key = value`", number + 1));
        };
        if section == Some(profile) {
            let value = Some(value.trim().to_owned());
            match key.trim() {
                "aws_access_key_id" => id = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    match (found, id, secret) {
        (false, _, _) => Err(format!("no profile [{profile}]")),
        (true, Some(access_key_id), Some(secret_access_key))
            if !access_key_id.is_empty() && !secret_access_key.is_empty() =>
        {
            Ok(Keys { access_key_id, secret_access_key, session_token: token.filter(|t| !t.is_empty()) })
        }
        _ => Err(format!("profile [{profile}] lacks aws_access_key_id or aws_secret_access_key")),
    }
}

impl Inner {
    fn path_of(&self, name: StateName) -> Path {
        match self.location.prefix.as_str() {
            "" => Path::from(format!("{name}.paused")),
            prefix => Path::from(format!("{prefix}/{name}.paused")),
        }
    }

    fn failed(&self, action: &'static str, path: &Path, error: object_store::Error) -> StoreError {
        StoreError::Service {
            action,
            object: format!("s3://{}/{path}", self.location.bucket),
            problem: one_line_bounded(&error.to_string()),
        }
    }

    async fn put(&self, name: StateName, bytes: Vec<u8>) -> Result<(), StoreError> {
        if bytes.len() as u64 > self.max_object {
            return Err(StoreError::TooLarge { id: name.id, limit: self.max_object });
        }
        let path = self.path_of(name);
        // One PUT: S3 makes an object visible whole or not at all.
        match self.store.put(&path, PutPayload::from(bytes)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed("writing", &path, e)),
        }
    }

    async fn get(&self, name: StateName) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(name);
        let too_large = StoreError::TooLarge { id: name.id, limit: self.max_object };
        let result = match self.store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(StoreError::Missing(name.id)),
            Err(e) => return Err(self.failed("reading", &path, e)),
        };
        if result.meta.size > self.max_object {
            return Err(too_large);
        }
        let mut bytes = Vec::with_capacity(result.meta.size as usize);
        let mut body = result.into_stream();
        // Bounded again while reading: a service may send more than it said.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.failed("reading", &path, e))?;
            if (bytes.len() + chunk.len()) as u64 > self.max_object {
                return Err(too_large);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn delete(&self, name: StateName) -> Result<(), StoreError> {
        let path = self.path_of(name);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("removing", &path, e)),
        }
    }

    async fn list(&self) -> Result<Vec<StateName>, StoreError> {
        let prefix = (!self.location.prefix.is_empty()).then(|| Path::from(self.location.prefix.as_str()));
        let mut listing = self.store.list(prefix.as_ref());
        let mut names = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta =
                meta.map_err(|e| self.failed("listing", prefix.as_ref().unwrap_or(&Path::default()), e))?;
            // Objects directly under the prefix named as a state names
            // itself; anything else in the bucket is not the store's.
            let under = match &prefix {
                Some(prefix) => meta.location.prefix_match(prefix).map(|parts| parts.collect::<Vec<_>>()),
                None => Some(meta.location.parts().collect()),
            };
            let Some([file]) = under.as_deref() else { continue };
            if let Some(name) = file.as_ref().strip_suffix(".paused").and_then(|stem| stem.parse().ok()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

impl PausedStore for S3Store {
    fn put(&self, name: StateName, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.inner.put(name, bytes))
    }

    fn get(&self, name: StateName) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        Box::pin(self.inner.get(name))
    }

    fn delete(&self, name: StateName) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.inner.delete(name))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<StateName>, StoreError>> {
        Box::pin(self.inner.list())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_credentials_file_gives_its_profiles_keys() {
        let dir = std::env::temp_dir().join(format!("mimobox-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("credentials");
        std::fs::write(
            &path,
            "# the fleet's\n[default]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t=\n\n\
             [other]\naws_access_key_id=OTHER\naws_secret_access_key=x\naws_session_token=tok\n",
        )
        .unwrap();
        let keys = shared_credentials(&path, "default").unwrap();
        assert_eq!((keys.access_key_id.as_str(), keys.secret_access_key.as_str()), ("AKID", "s3cr3t="));
        assert_eq!(keys.session_token, None);
        assert_eq!(shared_credentials(&path, "other").unwrap().session_token.as_deref(), Some("tok"));
        assert!(shared_credentials(&path, "absent").err().unwrap().contains("no profile [absent]"));
        std::fs::write(&path, "[default]\naws_access_key_id = AKID\n").unwrap();
        assert!(shared_credentials(&path, "default").err().unwrap().contains("lacks"));
        std::fs::write(&path, "[default]\nnonsense\n").unwrap();
        assert!(shared_credentials(&path, "default").err().unwrap().contains("line 2"));
        std::fs::write(&path, vec![b'#'; (MAX_CREDENTIALS_FILE + 1) as usize]).unwrap();
        assert!(shared_credentials(&path, "default").err().unwrap().contains("over"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_location_is_a_bucket_and_a_prefix_of_plain_segments() {
        let at = |url: &str| url.parse::<S3Location>();
        assert_eq!(
            at("s3://paused-sessions/fleet/a").unwrap(),
            S3Location { bucket: "paused-sessions".into(), prefix: "fleet/a".into() }
        );
        assert_eq!(at("s3://bucket").unwrap().prefix, "");
        assert_eq!(at("s3://bucket/p/").unwrap().to_string(), "s3://bucket/p");
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Bucket/p",
            "s3://-bucket/p",
            "s3://bucket-/p",
            "s3://bu..cket",
            "s3://bucket/../p",
            "s3://bucket/a//b",
            "s3://bucket/a/./b",
            "s3://bucket/a b",
            "s3://bucket/a%2fb",
            "file:///tmp",
            &format!("s3://{}", "a".repeat(64)),
        ] {
            assert!(at(bad).is_err(), "{bad} was taken");
        }
    }
}
