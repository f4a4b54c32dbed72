//! Reading an upload's image, shared by every stage that looks at pixels: parse the event,
//! fetch the bytes through the uploads location, decode within caps with EXIF orientation.
//! Bad input comes back as the [`Outcome`] the stage should return.

use bytes::Bytes;
use flashfit_runtime::Outcome;
use flashfit_schema::{Reason, UploadEvent};
use flashfit_storage::Location;
use image::RgbImage;

use crate::{AnalyzeError, Limits};

/// Upload events larger than this are not parsed (`invalid_event`).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

fn bad(reason: Reason, message: String) -> Outcome {
    Outcome::BadInput { reason, message }
}

/// Parses the event in `payload` and fetches its image (at most `max_bytes`).
pub async fn read_upload(
    uploads: &Location,
    payload: &[u8],
    max_bytes: u64,
) -> Result<(UploadEvent, Bytes), Outcome> {
    if payload.len() > MAX_EVENT_BYTES {
        return Err(bad(
            Reason::InvalidEvent,
            format!(
                "event is {} bytes, over the {MAX_EVENT_BYTES}-byte cap",
                payload.len()
            ),
        ));
    }
    let upload = UploadEvent::from_json(payload).map_err(|e| bad(Reason::InvalidEvent, e.0))?;
    match uploads.fetch(&upload.image_uri, max_bytes).await {
        Ok(b) => Ok((upload, b)),
        Err(e) => Err(match e {
            flashfit_storage::Error::NotAllowed(m) => bad(Reason::UriNotAllowed, m),
            flashfit_storage::Error::NotFound(m) => {
                bad(Reason::NotFound, format!("no object at {m}"))
            }
            flashfit_storage::Error::TooLarge { .. } => bad(Reason::TooLarge, e.to_string()),
            other => Outcome::Retry(other.to_string()),
        }),
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
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        crate::analysis::check_jpeg_complete(bytes)?;
    }
    let (img, orientation) = crate::analysis::decode_rgb(bytes, limits)?;
    let mut img = image::DynamicImage::ImageRgb8(img);
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}
