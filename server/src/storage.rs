//! Blob storage on `object_store` (the local filesystem by default).
//!
//! An upload streams into `tmp/<uuid>` while its SHA-256 is computed, then is
//! renamed to `blobs/<sha256>`: a blob under `blobs/` is always complete,
//! and identical files are stored once. Anything left in `tmp/` is from an
//! upload that never finished and is swept at start.

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the upload is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    /// A local file a worker stores or restores.
    #[error("local file {0}")]
    Local(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A stored, complete blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// A complete blob as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    pub key: String,
    pub size: u64,
    /// When it was last written (Unix seconds).
    pub modified_unix: i64,
}

/// A blob being written: bytes go to `tmp/<uuid>` as they come and are
/// hashed; `finish` renames it to `blobs/<sha256>`, `abort` removes it.
#[derive(Debug)]
pub struct BlobWriter {
    store: Arc<dyn ObjectStore>,
    tmp: StorePath,
    writer: WriteMultipart,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    pub fn put(&mut self, chunk: Bytes) {
        self.size += chunk.len() as u64;
        self.hasher.update(&chunk);
        self.writer.put(chunk);
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.put(Bytes::copy_from_slice(bytes));
    }

    pub async fn finish(self) -> Result<Stored> {
        self.writer.finish().await?;
        let sha256 = hex::encode(self.hasher.finalize());
        let key = format!("blobs/{sha256}");
        if let Err(e) = self
            .store
            .rename(&self.tmp, &StorePath::from(key.as_str()))
            .await
        {
            let _ = self.store.delete(&self.tmp).await;
            return Err(e.into());
        }
        Ok(Stored {
            key,
            sha256,
            size: self.size,
        })
    }

    /// Discards everything written; the temporary object never existed.
    pub async fn abort(self) {
        let _ = self.writer.abort().await;
        let _ = self.store.delete(&self.tmp).await;
    }
}

#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// An upload that sends nothing for this long is dropped (and leaves
    /// nothing behind).
    upload_idle: std::time::Duration,
}

/// The default for [`BlobStore::with_upload_idle`].
pub const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

impl BlobStore {
    /// A store rooted at `dir` (created if missing).
    pub fn local(dir: &Path) -> std::io::Result<BlobStore> {
        std::fs::create_dir_all(dir)?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(std::io::Error::other)?;
        Ok(BlobStore {
            store: Arc::new(fs),
            upload_idle: UPLOAD_IDLE,
        })
    }

    /// How long an upload may send nothing before it is dropped.
    pub fn with_upload_idle(mut self, idle: std::time::Duration) -> BlobStore {
        self.upload_idle = idle;
        self
    }

    /// Starts a blob written piece by piece (see [`BlobWriter`]).
    pub async fn writer(&self) -> Result<BlobWriter> {
        let tmp = StorePath::from(format!("tmp/{}", uuid::Uuid::new_v4()));
        let upload = self.store.put_multipart(&tmp).await?;
        Ok(BlobWriter {
            store: self.store.clone(),
            tmp,
            // 1 MiB parts: memory per blob stays bounded.
            writer: WriteMultipart::new_with_chunk_size(upload, 1024 * 1024),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Streams `body` into storage, refusing it once it passes `limit` bytes.
    /// On any error nothing is left behind.
    pub async fn put_stream<S, E>(&self, body: S, limit: u64) -> Result<Stored>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut w = self.writer().await?;
        let mut body = body;
        let outcome: Result<()> = async {
            loop {
                let next = tokio::time::timeout(self.upload_idle, body.next())
                    .await
                    .map_err(|_| {
                        Error::Interrupted(format!(
                            "no data for {} s",
                            self.upload_idle.as_secs_f64()
                        ))
                    })?;
                let Some(chunk) = next else { break };
                let chunk = chunk.map_err(|e| Error::Interrupted(e.to_string()))?;
                if w.size + chunk.len() as u64 > limit {
                    return Err(Error::TooLarge { limit });
                }
                // At most two parts in flight.
                w.writer.wait_for_capacity(2).await?;
                w.put(chunk);
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => w.finish().await,
            Err(e) => {
                w.abort().await;
                Err(e)
            }
        }
    }

    /// Stores a local file (a checkpoint's or a trained model's), read in
    /// 1 MiB chunks.
    pub async fn put_file(&self, path: &Path) -> Result<Stored> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::Local(format!("{}: {e}", path.display())))?;
        let chunks = futures::stream::try_unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = Vec::with_capacity(1024 * 1024);
            let n = (&mut file).take(1024 * 1024).read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>((n > 0).then(|| (Bytes::from(buf), file)))
        });
        self.put_stream(Box::pin(chunks), u64::MAX).await
    }

    /// Writes a blob to a local file: into a temporary name beside it,
    /// renamed when complete.
    pub async fn get_file(&self, key: &str, path: &Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| Error::Local(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let tmp = path.with_extension(format!("part-{}", uuid::Uuid::new_v4().simple()));
        let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
        let mut stream = self.stream(key).await?;
        let copied: Result<()> = async {
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?).await.map_err(io)?;
            }
            out.sync_all().await.map_err(io)?;
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, path).await.map_err(io)
    }

    /// Whether a complete blob is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&StorePath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A blob's bytes as a stream of chunks (never the whole blob at once).
    pub async fn stream(&self, key: &str) -> Result<impl Stream<Item = Result<Bytes>> + Unpin> {
        let got = self.store.get(&StorePath::from(key)).await?;
        Ok(got.into_stream().map(|c| c.map_err(Error::from)))
    }

    /// Bytes `start..end` of a blob as a stream of chunks (downloads that
    /// resume).
    pub async fn stream_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Unpin + Send + 'static> {
        let opts = object_store::GetOptions {
            range: Some(object_store::GetRange::Bounded(start..end)),
            ..Default::default()
        };
        let got = self.store.get_opts(&StorePath::from(key), opts).await?;
        Ok(got.into_stream().map(|c| c.map_err(Error::from)))
    }

    /// Removes what interrupted uploads left in `tmp/` (run at start).
    pub async fn sweep_temporary(&self) -> Result<usize> {
        let prefix = StorePath::from("tmp");
        let stale: Vec<_> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        for path in &stale {
            self.store.delete(path).await?;
        }
        Ok(stale.len())
    }

    /// Every key under `prefix` (tests and maintenance).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = StorePath::from(prefix);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Every complete blob (under `blobs/`).
    pub async fn list_blobs(&self) -> Result<Vec<BlobMeta>> {
        let prefix = StorePath::from("blobs");
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .map(|m| BlobMeta {
                key: m.location.to_string(),
                size: m.size,
                modified_unix: m.last_modified.timestamp(),
            })
            .collect())
    }

    /// Removes a blob (gone already is fine).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&StorePath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A blob's bytes, whole (small blobs: reports, cards; tests).
    pub async fn read(&self, key: &str) -> Result<Bytes> {
        Ok(self.store.get(&StorePath::from(key)).await?.bytes().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: Vec<std::result::Result<&'static [u8], &'static str>>,
    ) -> impl Stream<Item = std::result::Result<Bytes, &'static str>> + Unpin {
        futures::stream::iter(parts.into_iter().map(|p| p.map(Bytes::from_static)))
    }

    #[tokio::test]
    async fn stores_complete_uploads_under_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let stored = store
            .put_stream(chunks(vec![Ok(b"hello "), Ok(b"world")]), 100)
            .await
            .unwrap();
        assert_eq!(stored.size, 11);
        assert_eq!(
            stored.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            store.read(&stored.key).await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert!(store.keys("tmp").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn oversized_and_interrupted_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let err = store
            .put_stream(chunks(vec![Ok(b"0123456789"), Ok(b"0123456789")]), 15)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 15 }), "{err}");
        let err = store
            .put_stream(chunks(vec![Ok(b"0123"), Err("connection reset")]), 100)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Interrupted(_)), "{err}");
        assert!(
            store.keys("").await.unwrap().is_empty(),
            "{:?}",
            store.keys("").await
        );
        let leftovers: Vec<_> = walk(dir.path());
        assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");
    }

    #[tokio::test]
    async fn an_upload_that_stalls_is_dropped_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path())
            .unwrap()
            .with_upload_idle(std::time::Duration::from_millis(200));
        // One chunk, then nothing, ever: a client gone quiet.
        let stalled = futures::stream::iter([Ok::<_, &str>(Bytes::from_static(b"0123"))])
            .chain(futures::stream::pending());
        let started = std::time::Instant::now();
        let err = store.put_stream(Box::pin(stalled), 100).await.unwrap_err();
        assert!(
            matches!(err, Error::Interrupted(ref why) if why.contains("no data")),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        let leftovers: Vec<_> = walk(dir.path());
        assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");
    }

    #[tokio::test]
    async fn sweep_removes_stale_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/stale"), b"half").unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        assert_eq!(store.sweep_temporary().await.unwrap(), 1);
        assert!(store.keys("tmp").await.unwrap().is_empty());
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
