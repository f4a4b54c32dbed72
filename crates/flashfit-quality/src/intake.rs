//! Reading an upload's image, shared by every stage that looks at pixels: parse the event,
//! fetch the bytes through the uploads location, decode within caps with EXIF orientation.
//! Bad input comes back as the [`Outcome`] the stage should return.

use bytes::Bytes;
use flashfit_runtime::Outcome;
use flashfit_schema::{Reason, UploadEvent};
use flashfit_storage::Location;
use image::RgbImage;

use crate::{AnalyzeError, Limits};

/// The process-wide pixel budget of decodes in progress, in thousands of pixels
/// ([`QualityConfig::decode_budget_pixels`](flashfit_config::QualityConfig), fixed by the
/// first stage that decodes).
static DECODE_BUDGET: std::sync::OnceLock<(std::sync::Arc<tokio::sync::Semaphore>, u32)> =
    std::sync::OnceLock::new();

/// Room for decoding one image, held until its pixels are dropped.
#[derive(Debug)]
pub struct DecodePermit(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

/// Waits until decoding `bytes` fits in the process's pixel budget. The size comes from the
/// image header (no pixels are allocated); an unreadable header takes no room (the decoder
/// rejects it).
pub async fn reserve_decode(bytes: &[u8], caps: &flashfit_config::QualityConfig) -> DecodePermit {
    let (sem, total) = DECODE_BUDGET.get_or_init(|| {
        let k = u32::try_from(caps.decode_budget_pixels.div_ceil(1000).max(1)).unwrap_or(u32::MAX);
        (
            std::sync::Arc::new(tokio::sync::Semaphore::new(k as usize)),
            k,
        )
    });
    let dims = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    let Some((w, h)) = dims else {
        return DecodePermit(None);
    };
    let k = (u64::from(w) * u64::from(h)).div_ceil(1000);
    let k = u32::try_from(k).unwrap_or(u32::MAX).clamp(1, *total);
    DecodePermit(sem.clone().acquire_many_owned(k).await.ok())
}

/// Upload events larger than this are not parsed (`invalid_event`).
pub const MAX_EVENT_BYTES: usize = flashfit_schema::MAX_EVENT_BYTES;

/// Records the model stages read (an upload event of up to [`MAX_EVENT_BYTES`] plus what the
/// stages before added: detections, the classifier's 1280-float image vector, …) larger than
/// this are not parsed (`invalid_event`).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

fn bad(reason: Reason, message: String) -> Outcome {
    Outcome::BadInput { reason, message }
}

/// Parses the event in `payload` (at most `max_event` bytes: [`MAX_EVENT_BYTES`] for upload
/// events, [`MAX_RECORD_BYTES`] for records) and fetches its image (at most `caps.max_bytes`). A missing
/// object is retried while both the time since the worker received the message (`waited`)
/// and the time since the event's `uploaded_at` are under `caps.not_found_grace_ms`, then final
/// (`not_found`): an old event (a replay) is final at once, and a future `uploaded_at` (within
/// the allowed clock skew; beyond it the event is invalid) cannot stretch the wait. Store
/// failures are transient unless the store says retrying cannot help.
pub async fn read_upload(
    uploads: &Location,
    payload: &[u8],
    caps: &flashfit_config::QualityConfig,
    max_event: usize,
    waited: std::time::Duration,
) -> Result<(UploadEvent, Bytes), Outcome> {
    if payload.len() > max_event {
        return Err(bad(
            Reason::InvalidEvent,
            format!(
                "event is {} bytes, over the {max_event}-byte cap",
                payload.len()
            ),
        ));
    }
    let upload = UploadEvent::from_json(payload).map_err(|e| bad(Reason::InvalidEvent, e.0))?;
    check_owner(uploads, &upload, &caps.owner_prefix)?;
    match uploads.fetch(&upload.image_uri, caps.max_bytes).await {
        Ok(b) => Ok((upload, b)),
        Err(e) => Err(match e {
            flashfit_storage::Error::NotAllowed(m) => bad(Reason::UriNotAllowed, m),
            flashfit_storage::Error::NotFound(m) => {
                let since_upload = chrono::Utc::now() - upload.uploaded_at;
                let grace = chrono::Duration::milliseconds(
                    i64::try_from(caps.not_found_grace_ms).unwrap_or(i64::MAX),
                );
                let waited = chrono::Duration::from_std(waited).unwrap_or(grace);
                if since_upload < grace && waited < grace {
                    Outcome::Retry(format!(
                        "no object at {m} yet ({}s after receipt; final after {}s)",
                        waited.num_seconds(),
                        grace.num_seconds()
                    ))
                } else {
                    bad(Reason::NotFound, format!("no object at {m}"))
                }
            }
            flashfit_storage::Error::TooLarge { .. } => bad(Reason::TooLarge, e.to_string()),
            other if other.is_retryable() => Outcome::Retry(other.to_string()),
            other => Outcome::Internal(other.to_string()),
        }),
    }
}

/// An upload may only name a photo in its user's folder of the uploads location
/// (`owner_prefix` with `{user_id}` replaced; empty: no check): otherwise user A could file
/// user B's photo, its tags and caption in A's wardrobe (`not_owner`).
pub fn check_owner(
    uploads: &Location,
    upload: &UploadEvent,
    owner_prefix: &str,
) -> Result<(), Outcome> {
    if owner_prefix.is_empty() {
        return Ok(());
    }
    let want = owner_prefix.replace("{user_id}", &upload.user_id);
    match uploads.relative(&upload.image_uri) {
        Ok(key) if key.starts_with(&want) => Ok(()),
        Ok(key) => Err(bad(
            Reason::NotOwner,
            format!(
                "the photo's key `{key}` is not under `{want}`, the folder of user `{}`",
                upload.user_id
            ),
        )),
        Err(flashfit_storage::Error::NotAllowed(m)) => Err(bad(Reason::UriNotAllowed, m)),
        Err(e) => Err(Outcome::Internal(e.to_string())),
    }
}

/// Maps a decode failure to the stage outcome.
pub fn decode_outcome(e: AnalyzeError) -> Outcome {
    match e {
        AnalyzeError::Undecodable(m) => bad(Reason::Undecodable, m),
        AnalyzeError::TooLarge(m) => bad(Reason::TooLarge, m),
    }
}

/// Decodes JPEG or PNG to RGB as displayed (EXIF orientation applied), refusing images over
/// the caps before allocating pixels.
pub fn decode_rgb_oriented(bytes: &[u8], limits: Limits) -> Result<RgbImage, AnalyzeError> {
    decode_rgb_oriented_reduced(bytes, limits, 1).map(|(img, _)| img)
}

/// [`decode_rgb_oriented`] at 1/`reduce` of the photo's size (1, 2, 4 or 8) when it is a JPEG
/// libjpeg-turbo decodes (DCT scaling: a quarter of the pixels for a fraction of the work);
/// other photos come at full size. Also returns the photo's full size as displayed, which
/// gives the scale.
pub fn decode_rgb_oriented_reduced(
    bytes: &[u8],
    limits: Limits,
    reduce: u32,
) -> Result<(RgbImage, (u32, u32)), AnalyzeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        crate::analysis::check_jpeg_complete(bytes)?;
    }
    let (img, orientation, (w, h)) = crate::analysis::decode_rgb_reduced(bytes, limits, reduce)?;
    let full = crate::analysis::oriented(w, h, orientation);
    let mut img = image::DynamicImage::ImageRgb8(img);
    img.apply_orientation(orientation);
    Ok((img.into_rgb8(), full))
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(w, h)
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("png");
        out
    }

    /// Issue 12, defect 11: decodes share one pixel budget per process; a second 250 kP
    /// decode waits while a first holds 250 of the 300 kP, and goes once it is released.
    #[tokio::test]
    async fn decodes_wait_for_room_in_the_pixel_budget() {
        let caps = flashfit_config::QualityConfig {
            decode_budget_pixels: 300_000,
            ..Default::default()
        };
        let img = png(500, 500);
        let first = reserve_decode(&img, &caps).await;
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            reserve_decode(&img, &caps),
        )
        .await;
        assert!(second.is_err(), "two 250 kP decodes fit in 300 kP");
        drop(first);
        let second = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            reserve_decode(&img, &caps),
        )
        .await;
        assert!(second.is_ok(), "the budget was not released");
        // An image over the whole budget still decodes (alone).
        drop(second);
        let huge = png(1000, 1000);
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            reserve_decode(&huge, &caps),
        )
        .await
        .expect("an image over the budget waits for all of it, not forever");
    }
}
