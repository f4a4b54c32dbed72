//! Object storage behind a URI: `s3://bucket/prefix` or `file:///abs/dir`, opened with
//! object_store. [`Location`] is one such place; [`Location::fetch`] reads an object named by a
//! full URI only if the URI lies inside the location, so an upload event can never make a
//! worker read another bucket, escape a directory with `..`, or use another scheme.
//!
//! Main types: [`Location`], [`Error`] (knows whether a retry can help).

use std::sync::Arc;

use bytes::Bytes;
use flashfit_config::S3Config;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

pub use object_store;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI is outside the location, malformed, or of another scheme: bad input.
    #[error("uri not allowed: {0}")]
    NotAllowed(String),
    /// The object does not exist: bad input.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The object is larger than the caller's cap: bad input.
    #[error("object {uri} is {size} bytes, over the {max}-byte cap")]
    TooLarge { uri: String, size: u64, max: u64 },
    /// The location itself is misconfigured: an operator must act.
    #[error("invalid storage location {uri}: {message}")]
    Config { uri: String, message: String },
    /// The store failed (network, throttling, server error): a retry may help.
    #[error("object store error: {0}")]
    Store(#[from] object_store::Error),
}

impl Error {
    /// True when the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(e) => !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
            ),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    S3 { bucket: String },
    File { root: std::path::PathBuf },
}

/// A storage location: an object store plus the key prefix everything lives under.
#[derive(Debug, Clone)]
pub struct Location {
    uri: String,
    scheme: Scheme,
    prefix: Path,
    store: Arc<dyn ObjectStore>,
}

impl Location {
    /// Opens `s3://bucket[/prefix]` (credentials and endpoint from `s3`) or `file:///abs/dir`
    /// (created if missing).
    pub fn open(uri: &str, s3: &S3Config) -> Result<Self> {
        let config_err = |message: &str| Error::Config {
            uri: uri.to_owned(),
            message: message.to_owned(),
        };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(config_err("no bucket"));
            }
            let prefix = Path::parse(prefix.trim_matches('/'))
                .map_err(|e| config_err(&format!("bad prefix: {e}")))?;
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_allow_http(s3.allow_http)
                .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()))
                .with_retry(RetryConfig {
                    max_retries: 3,
                    retry_timeout: std::time::Duration::from_secs(15),
                    ..RetryConfig::default()
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_allow_http(s3.allow_http)
                        .with_timeout(std::time::Duration::from_secs(30)),
                );
            if let Some(k) = &s3.access_key_id {
                b = b.with_access_key_id(k.expose());
            }
            if let Some(k) = &s3.secret_access_key {
                b = b.with_secret_access_key(k.expose());
            }
            if let Some(e) = &s3.endpoint_url {
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
            }
            let store = b.build().map_err(|e| config_err(&e.to_string()))?;
            Ok(Location {
                uri: uri.to_owned(),
                scheme: Scheme::S3 {
                    bucket: bucket.to_owned(),
                },
                prefix,
                store: Arc::new(store),
            })
        } else if uri.starts_with("file://") {
            let root = file_uri_to_path(uri).map_err(|m| config_err(&m))?;
            std::fs::create_dir_all(&root)
                .map_err(|e| config_err(&format!("cannot create directory: {e}")))?;
            let root = root
                .canonicalize()
                .map_err(|e| config_err(&format!("cannot resolve directory: {e}")))?;
            let store =
                LocalFileSystem::new_with_prefix(&root).map_err(|e| config_err(&e.to_string()))?;
            Ok(Location {
                uri: uri.to_owned(),
                scheme: Scheme::File { root },
                prefix: Path::default(),
                store: Arc::new(store),
            })
        } else {
            Err(config_err("expected s3://bucket/prefix or file:///abs/dir"))
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The store, rooted at the bucket (S3) or the directory (file).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key prefix inside [`Location::store`] this location covers.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// A path inside this location from a relative key (`a/b.parquet`).
    pub fn child(&self, relative: &str) -> Result<Path> {
        let rel = Path::parse(relative).map_err(|e| Error::NotAllowed(e.to_string()))?;
        Ok(self.prefix.parts().chain(rel.parts()).collect())
    }

    /// The full URI of a path inside the store (inverse of [`Location::resolve`]).
    pub fn uri_of(&self, path: &Path) -> String {
        match &self.scheme {
            Scheme::S3 { bucket } => format!("s3://{bucket}/{path}"),
            Scheme::File { root } => {
                let full = root.join(path.as_ref());
                url::Url::from_file_path(&full)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|()| format!("file://{}", full.display()))
            }
        }
    }

    /// Maps a full object URI to its path in the store, refusing anything outside this location.
    pub fn resolve(&self, uri: &str) -> Result<Path> {
        let not_allowed = |why: &str| Error::NotAllowed(format!("{uri}: {why}"));
        let key = match &self.scheme {
            Scheme::S3 { bucket } => {
                let rest = uri
                    .strip_prefix("s3://")
                    .ok_or_else(|| not_allowed("expected an s3:// uri"))?;
                let (b, key) = rest
                    .split_once('/')
                    .ok_or_else(|| not_allowed("no object key"))?;
                if b != bucket {
                    return Err(not_allowed(&format!("bucket `{b}` is not `{bucket}`")));
                }
                check_segments(key.split('/')).map_err(|w| not_allowed(&w))?;
                key.to_owned()
            }
            Scheme::File { root } => {
                if !uri.starts_with("file:///") {
                    return Err(not_allowed("expected a file:///absolute/path uri"));
                }
                // Reject `..` before URL parsing, which would silently normalise it away.
                let raw_path = uri.trim_start_matches("file://");
                check_segments(raw_path.split('/').skip(1)).map_err(|w| not_allowed(&w))?;
                let path = file_uri_to_path(uri).map_err(|w| not_allowed(&w))?;
                check_segments(
                    path.components()
                        .skip(1)
                        .map(|c| c.as_os_str().to_str().unwrap_or("\0")),
                )
                .map_err(|w| not_allowed(&w))?;
                let rel = path
                    .strip_prefix(root)
                    .map_err(|_| not_allowed(&format!("outside {}", root.display())))?;
                rel.to_str()
                    .ok_or_else(|| not_allowed("path is not UTF-8"))?
                    .to_owned()
            }
        };
        let path = Path::parse(&key).map_err(|e| not_allowed(&e.to_string()))?;
        if !path.prefix_matches(&self.prefix) || path == self.prefix {
            return Err(not_allowed(&format!("outside {}", self.uri)));
        }
        Ok(path)
    }

    /// The key of the object named by `uri` relative to this location's prefix
    /// (`user/photo.jpg`), refusing URIs outside it as [`Location::resolve`] does.
    pub fn relative(&self, uri: &str) -> Result<String> {
        let path = self.resolve(uri)?;
        let rest = path
            .prefix_match(&self.prefix)
            .ok_or_else(|| Error::NotAllowed(format!("{uri}: outside {}", self.uri)))?;
        Ok(rest
            .map(|p| p.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// Reads the object named by `uri`, refusing URIs outside this location and objects over
    /// `max_bytes` (checked before the body is read).
    pub async fn fetch(&self, uri: &str, max_bytes: u64) -> Result<Bytes> {
        let path = self.resolve(uri)?;
        let result = match self.store.get_opts(&path, Default::default()).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound(uri.to_owned()));
            }
            Err(e) => return Err(Error::Store(e)),
        };
        let size = result.meta.size;
        if size > max_bytes {
            return Err(Error::TooLarge {
                uri: uri.to_owned(),
                size,
                max: max_bytes,
            });
        }
        Ok(result.bytes().await?)
    }
}

fn check_segments<'a>(segments: impl Iterator<Item = &'a str>) -> Result<(), String> {
    for s in segments {
        match s {
            "" => return Err("empty path segment".into()),
            "." | ".." => return Err(format!("`{s}` path segment")),
            s if s.contains('\0') || s.contains('\\') => {
                return Err("control character or backslash in path".into());
            }
            // `%2e%2e`, `%2E.`, `.%2e`: any spelling that a URL decoder turns into `.`/`..`.
            s if matches!(
                s.replace("%2e", ".").replace("%2E", ".").as_str(),
                "." | ".."
            ) =>
            {
                return Err("encoded `.` path segment".into());
            }
            _ => {}
        }
    }
    Ok(())
}

fn file_uri_to_path(uri: &str) -> Result<std::path::PathBuf, String> {
    // `file://./dir` and `file://dir`: relative to the working directory (config defaults).
    if let Some(rest) = uri.strip_prefix("file://")
        && !rest.starts_with('/')
    {
        let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
        return Ok(cwd.join(rest.trim_start_matches("./")));
    }
    let url = url::Url::parse(uri).map_err(|e| format!("not a file uri: {e}"))?;
    if url.scheme() != "file" || url.host_str().is_some_and(|h| !h.is_empty()) {
        return Err("expected file:///absolute/path".into());
    }
    url.to_file_path()
        .map_err(|()| "expected file:///absolute/path".into())
}

#[cfg(test)]
mod tests;
