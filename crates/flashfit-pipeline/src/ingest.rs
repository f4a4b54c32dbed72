//! `flashfit ingest`: publish one upload event per photo in a folder, as an upload service
//! would. Photos outside the uploads location are first copied into it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use flashfit_config::Config;
use flashfit_runtime::kafka;
use flashfit_schema::{Topics, UploadEvent};
use flashfit_storage::Location;
use flashfit_storage::object_store::ObjectStoreExt;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::{Error, Result};

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// Image files directly in `dir`, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Makes each file readable through the uploads location (copying it in when it lies
/// outside), publishes an upload event per file keyed by `garment_id`, and waits for the
/// broker to acknowledge them all.
pub async fn ingest_files(
    config: &Config,
    files: &[PathBuf],
    user_id: &str,
) -> Result<Vec<UploadEvent>> {
    let planned: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| (f.clone(), uuid::Uuid::new_v4().to_string()))
        .collect();
    ingest_as(config, &planned, user_id).await
}

/// The garment id of a photo's bytes in a user's wardrobe: the same photo of the same user
/// is the same garment (so ingesting a folder twice adds nothing), different users' copies
/// are different garments. A UUID (version 8, from SHA-256 of user id and bytes).
pub fn content_garment_id(user_id: &str, bytes: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(user_id.as_bytes());
    h.update([0u8]);
    h.update(bytes);
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(id).to_string()
}

/// [`ingest_files`] with the garment id of each file given.
pub async fn ingest_as(
    config: &Config,
    files: &[(PathBuf, String)],
    user_id: &str,
) -> Result<Vec<UploadEvent>> {
    let uploads_uri = config.uploads_uri.as_deref().ok_or_else(|| {
        Error::Invalid("set FLASHFIT_UPLOADS_URI to say where photos are stored".into())
    })?;
    let uploads = Location::open(uploads_uri, &config.s3)?;
    let topic = Topics::new(config.kafka.topic_prefix.clone()).uploads();
    kafka::ensure_topics(&config.kafka, std::slice::from_ref(&topic)).await?;
    let producer = kafka::producer(&config.kafka)?;
    let mut events = Vec::with_capacity(files.len());
    for (file, garment_id) in files {
        let image_uri = place(
            &uploads,
            &config.quality.owner_prefix,
            file,
            user_id,
            garment_id,
        )
        .await?;
        events.push(UploadEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_owned(),
            garment_id: garment_id.clone(),
            image_uri,
            uploaded_at: Utc::now(),
            kind: None,
        });
    }
    publish(&producer, &topic, &events).await?;
    Ok(events)
}

/// Publishes upload events and waits for every acknowledgement.
pub async fn publish(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    events: &[UploadEvent],
) -> Result<()> {
    publish_with(producer, topic, events, &[]).await
}

/// [`publish`] with headers on every record.
pub async fn publish_with(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    events: &[UploadEvent],
    headers: &[(&str, &str)],
) -> Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    let sends = events.iter().map(|e| async move {
        let value = serde_json::to_vec(e).map_err(|x| Error::Invalid(x.to_string()))?;
        let hs = headers
            .iter()
            .fold(OwnedHeaders::new(), |hs, (key, value)| {
                hs.insert(Header {
                    key,
                    value: Some(*value),
                })
            });
        producer
            .send(
                FutureRecord::to(topic)
                    .key(e.garment_id.as_bytes())
                    .payload(&value)
                    .headers(hs),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(err, _)| Error::Kafka(err))?;
        Ok::<(), Error>(())
    });
    for r in futures::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

/// Where `file` is read from by the chain: its own URI when it already lies in the user's
/// folder of the uploads location (`[quality] owner_prefix`), else a copy put there under
/// the garment id.
async fn place(
    uploads: &Location,
    owner_prefix: &str,
    file: &Path,
    user_id: &str,
    garment_id: &str,
) -> Result<String> {
    flashfit_schema::check_user_id(user_id).map_err(|e| Error::Invalid(e.0))?;
    let folder = owner_prefix.replace("{user_id}", user_id);
    let canonical = file.canonicalize()?;
    if let Ok(uri) = url::Url::from_file_path(&canonical)
        && uploads
            .relative(uri.as_str())
            .is_ok_and(|key| key.starts_with(&folder))
    {
        return Ok(uri.to_string());
    }
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("img")
        .to_ascii_lowercase();
    let path = uploads.child(&format!("{folder}{garment_id}.{ext}"))?;
    let bytes = tokio::fs::read(file).await?;
    uploads
        .store()
        .put(&path, bytes.into())
        .await
        .map_err(flashfit_storage::Error::Store)?;
    Ok(uploads.uri_of(&path))
}
