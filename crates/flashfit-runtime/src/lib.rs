//! flashfit-runtime
