//! flashfit-quality
