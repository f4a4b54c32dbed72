//! Column constructors every table schema uses (no I/O, no other module of this crate).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// A text column.
pub fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// A nullable list column of `item`.
pub fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        true,
    )
}

/// A UTC timestamp column in microseconds (the tables' time columns).
pub fn utc_time(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        nullable,
    )
}
