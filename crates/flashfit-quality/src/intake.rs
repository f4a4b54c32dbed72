//! Reading an upload's image, shared by every stage that looks at pixels: parse the event,
//! fetch the bytes through the uploads location, decode within caps with EXIF orientation.
//! Bad input comes back as the [`Outcome`] the stage should return.

use bytes::Bytes;
use flashfit_runtime::Outcome;
use flashfit_schema::{Reason, UploadEvent};
use flashfit_storage::Location;
use image::metadata::Orientation;
use image::{ImageDecoder, ImageReader, RgbImage};

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
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| AnalyzeError::Undecodable(e.to_string()))?;
    if reader.format().is_none() {
        return Err(AnalyzeError::Undecodable(
            "not a supported image format (JPEG, PNG)".into(),
        ));
    }
    let mut dec = reader
        .into_decoder()
        .map_err(|e| AnalyzeError::Undecodable(e.to_string()))?;
    let (w, h) = dec.dimensions();
    crate::analysis::check_dims(w.into(), h.into(), limits)?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    dec.set_limits(l)
        .map_err(|e| AnalyzeError::TooLarge(e.to_string()))?;
    let orientation = dec.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(dec).map_err(|e| match e {
        image::ImageError::Limits(l) => AnalyzeError::TooLarge(l.to_string()),
        other => AnalyzeError::Undecodable(other.to_string()),
    })?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}
