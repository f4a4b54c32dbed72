//! The feedback worker's garment lookup: a user's garments from the LanceDB garments table.

use async_trait::async_trait;
use flashfit_config::Config;
use flashfit_outfits::Item;
use flashfit_prefs::stage::GarmentLookup;

/// Garment records from the LanceDB garments table (opened on first use).
pub struct LanceLookup {
    uri: String,
    s3: flashfit_config::S3Config,
    lance: flashfit_config::LanceConfig,
    table_name: String,
    dims: flashfit_lance::rows::VectorDims,
    table: tokio::sync::OnceCell<lancedb::Table>,
}

impl LanceLookup {
    pub fn new(config: &Config) -> crate::Result<Self> {
        Ok(LanceLookup {
            uri: config.lancedb_uri.clone(),
            s3: config.s3.clone(),
            lance: config.lance.clone(),
            table_name: config.lance.table.clone(),
            dims: crate::vector_dims(config)?,
            table: tokio::sync::OnceCell::new(),
        })
    }

    async fn table(&self) -> flashfit_lance::Result<&lancedb::Table> {
        self.table
            .get_or_try_init(|| async {
                let db = flashfit_lance::connect(&self.uri, &self.s3, &self.lance).await?;
                flashfit_lance::garments(&db, &self.table_name, self.dims).await
            })
            .await
    }
}

#[async_trait]
impl GarmentLookup for LanceLookup {
    async fn garments(
        &self,
        user_id: &str,
        ids: &[String],
    ) -> std::result::Result<Vec<Item>, String> {
        let t = self.table().await.map_err(|e| e.to_string())?;
        flashfit_lance::wardrobe::items(t, user_id, Some(ids), false)
            .await
            .map_err(|e| e.to_string())
    }
}
