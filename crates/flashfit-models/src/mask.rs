//! Person/background segmentation (MediaPipe selfie model, TFJS copy converted to ONNX): the
//! colour extractor keeps a worn garment's pixels and drops the background.

use image::RgbImage;

use crate::session::{Input, OnnxSession, take};
use crate::{ModelDir, Result, resize_bilinear};

pub struct PersonMask {
    session: OnnxSession,
}

impl std::fmt::Debug for PersonMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonMask(selfie-segmentation)")
    }
}

/// Person probability per pixel of a `side`×`side` grid laid over the whole image.
#[derive(Debug, Clone)]
pub struct MaskGrid {
    pub side: usize,
    pub prob: Vec<f32>,
}

impl MaskGrid {
    /// Probability at pixel (`x`, `y`) of a `w`×`h` image.
    pub fn at(&self, x: u32, y: u32, w: u32, h: u32) -> f32 {
        let gx = (x as usize * self.side / w.max(1) as usize).min(self.side - 1);
        let gy = (y as usize * self.side / h.max(1) as usize).min(self.side - 1);
        self.prob[gy * self.side + gx]
    }
}

impl PersonMask {
    pub const NAME: &'static str = "selfie-segmentation";
    pub const VERSION: &'static str = "1";
    pub const SIDE: usize = 256;

    pub fn load(dir: &ModelDir, threads: impl Into<crate::Threads>) -> Result<Self> {
        Ok(PersonMask {
            session: OnnxSession::load(dir, Self::NAME, Self::VERSION, threads)?,
        })
    }

    /// Blocking.
    pub fn mask(&self, img: &RgbImage) -> Result<MaskGrid> {
        let side = Self::SIDE as u32;
        let small = resize_bilinear(img, side, side);
        let data: Vec<f32> = small
            .as_raw()
            .iter()
            .map(|&v| f32::from(v) / 255.0)
            .collect();
        let mut out = self.session.run(&[Input::F32(
            "input_1:0",
            vec![1, Self::SIDE, Self::SIDE, 3],
            &data,
        )])?;
        let prob = take(&mut out, "activation_10:0")?.data;
        Ok(MaskGrid {
            side: Self::SIDE,
            prob,
        })
    }
}
