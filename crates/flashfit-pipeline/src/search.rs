//! Searching a user's wardrobe: [`Searcher`] (the LanceDB table and the text model).

use std::sync::Arc;

use flashfit_config::Config;

use crate::{Error, Result};

/// A user's wardrobe search: the vector table (opened once) and the text model (loaded on the
/// first text query). Shared by `flashfit search`, `serve`'s handlers and `flashfit run`.
pub struct Searcher {
    table: lancedb::Table,
    models: flashfit_models::ModelDir,
    text_model: tokio::sync::OnceCell<Arc<flashfit_models::text::MiniLm>>,
}

impl Searcher {
    pub async fn open(config: &Config) -> Result<Self> {
        let lance = |e: flashfit_lance::Error| Error::Invalid(e.to_string());
        let db = flashfit_lance::connect(&config.lancedb_uri, &config.s3, &config.lance)
            .await
            .map_err(lance)?;
        let table = flashfit_lance::garments(&db, &config.lance.table, crate::vector_dims(config)?)
            .await
            .map_err(lance)?;
        Ok(Searcher {
            table,
            models: crate::model_dir(config),
            text_model: tokio::sync::OnceCell::new(),
        })
    }

    pub fn table(&self) -> &lancedb::Table {
        &self.table
    }

    /// The text model's vector for `text` (the model loads on first use).
    pub async fn text_vector(&self, text: &str) -> std::result::Result<Vec<f32>, String> {
        self.text_vector_unless(text, &tokio_util::sync::CancellationToken::new())
            .await
    }

    /// [`Searcher::text_vector`], skipped if `cancel` fires before the embedding starts (a
    /// request that timed out while it waited for a blocking thread).
    pub async fn text_vector_unless(
        &self,
        text: &str,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> std::result::Result<Vec<f32>, String> {
        let model = self
            .text_model
            .get_or_try_init(|| async {
                let dir = self.models.clone();
                tokio::task::spawn_blocking(move || {
                    flashfit_models::text::MiniLm::load(&dir, 1).map(Arc::new)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            })
            .await?
            .clone();
        let text = text.to_owned();
        let cancel = cancel.clone();
        tokio::task::spawn_blocking(move || {
            if cancel.is_cancelled() {
                return Err(flashfit_models::Error::Inference(
                    "cancelled: the request timed out before the text was embedded".into(),
                ));
            }
            model.embed(&[text])
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
        .map(|v| v.into_iter().next().unwrap_or_default())
    }
}
