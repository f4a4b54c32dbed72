//! all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), tokenised in Rust with the
//! model's own `tokenizer.json` (WordPiece, uncased, truncated at 128 tokens).

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};

use crate::session::{Input, OnnxSession, take};
use crate::{Error, ModelDir, Result};

pub struct MiniLm {
    session: OnnxSession,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MiniLm(all-minilm-l6-v2)")
    }
}

impl MiniLm {
    pub const NAME: &'static str = "all-minilm-l6-v2";
    pub const VERSION: &'static str = "1";
    pub const DIM: usize = 384;

    pub fn load(dir: &ModelDir, threads: impl Into<crate::Threads>) -> Result<Self> {
        let session = OnnxSession::load(dir, Self::NAME, Self::VERSION, threads)?;
        let path = dir.file(&format!("{}/{}/tokenizer.json", Self::NAME, Self::VERSION))?;
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| Error::ModelMissing {
            path: format!("{}: {e}", path.display()),
        })?;
        // The shipped file pads every row to 128; pad a batch to its longest row instead (the
        // attention mask makes the result identical, and short captions run much faster).
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        Ok(MiniLm { session, tokenizer })
    }

    /// Token ids and attention mask for `texts`, as the model takes them (`[b, s]` row-major).
    pub fn tokenize(&self, texts: &[String]) -> Result<(usize, Vec<i64>, Vec<i64>)> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::BadInput(format!("tokenizer: {e}")))?;
        let seq = enc.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(seq * enc.len());
        let mut mask = Vec::with_capacity(seq * enc.len());
        for e in &enc {
            ids.extend(e.get_ids().iter().map(|&v| i64::from(v)));
            mask.extend(e.get_attention_mask().iter().map(|&v| i64::from(v)));
        }
        Ok((seq, ids, mask))
    }

    /// Embeds a batch of texts. Blocking.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (seq, ids, mask) = self.tokenize(texts)?;
        let shape = vec![texts.len(), seq];
        let mut out = self.session.run(&[
            Input::I64("input_ids", shape.clone(), &ids),
            Input::I64("attention_mask", shape, &mask),
        ])?;
        let emb = take(&mut out, "sentence_embedding")?;
        Ok(emb.data.chunks(Self::DIM).map(<[f32]>::to_vec).collect())
    }
}
