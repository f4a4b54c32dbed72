//! What the eval tests share.

use std::path::PathBuf;

/// The labelled set: `FLASHFIT_EVAL_SET`, else `eval` beside the models directory (where
/// `models/train_head.sh` builds it).
pub fn set_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FLASHFIT_EVAL_SET") {
        return d.into();
    }
    let models = flashfit_models::ModelDir::from_env();
    models
        .path()
        .parent()
        .map(|p| p.join("eval"))
        .unwrap_or_default()
}
