//! The labelled set's `labels.toml` as `eval/build_set.py` writes it: one `[[photo]]` per photo,
//! its `[[photo.item]]`s the garments a person can see.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One value or several, any of which is right (`group = ["outerwear", "tops"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn accepts(&self, v: &str) -> bool {
        match self {
            OneOrMany::One(s) => s == v,
            OneOrMany::Many(all) => all.iter().any(|s| s == v),
        }
    }

    /// The first (main) value.
    pub fn first(&self) -> &str {
        match self {
            OneOrMany::One(s) => s,
            OneOrMany::Many(all) => all.first().map_or("", String::as_str),
        }
    }
}

/// What a photo is: one garment (a product shot) or people wearing garments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Garment,
    Outfit,
}

/// Where on a person (or the whole photo, for a product shot) a garment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    Top,
    Bottom,
    Footwear,
    Accessory,
    Whole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub region: Region,
    /// `[x1, y1, x2, y2]` in the photo's pixels (outfits).
    #[serde(default, rename = "box")]
    pub bbox: Option<[f32; 4]>,
    pub group: OneOrMany,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub colour: Option<OneOrMany>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Photo {
    pub file: String,
    pub source: String,
    pub licence: String,
    pub clothing: bool,
    #[serde(default)]
    pub kind: Kind,
    #[serde(default)]
    pub full_body: bool,
    /// What build_set.py did to the source pixels (recorded, not used here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<toml::Value>,
    #[serde(default, rename = "item")]
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Deserialize)]
struct File {
    photo: Vec<Photo>,
}

/// Parses a set's labels, checking every group, category and colour name against the
/// taxonomy and the colour namer.
pub fn parse(text: &str) -> Result<Vec<Photo>> {
    let file: File = toml::from_str(text).map_err(|e| Error::Labels(e.to_string()))?;
    let groups = flashfit_schema::taxonomy::GROUPS;
    for p in &file.photo {
        for i in &p.items {
            let names = match &i.group {
                OneOrMany::One(g) => std::slice::from_ref(g),
                OneOrMany::Many(g) => g.as_slice(),
            };
            if let Some(bad) = names.iter().find(|g| !groups.contains(&g.as_str())) {
                return Err(Error::Labels(format!("{}: unknown group `{bad}`", p.file)));
            }
            if let Some(c) = &i.category
                && flashfit_schema::taxonomy::index(c).is_none()
            {
                return Err(Error::Labels(format!("{}: unknown category `{c}`", p.file)));
            }
        }
    }
    Ok(file.photo)
}

/// `DIR/labels.toml`.
pub fn load(dir: &Path) -> Result<Vec<Photo>> {
    let path = dir.join("labels.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Labels(format!(
            "{}: {e} (build the set with eval/build_set.py)",
            path.display()
        ))
    })?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_with_lists_and_reject_unknown_names() {
        let p = parse(
            r#"
[[photo]]
file = "a.jpg"
source = "x"
licence = "CC0"
clothing = true
kind = "outfit"
full_body = true
[[photo.item]]
region = "top"
box = [1, 2, 3, 4]
group = ["outerwear", "tops"]
category = "coat"
colour = ["beige", "white"]
[[photo]]
file = "b.jpg"
source = "x"
licence = "CC0"
clothing = false
"#,
        )
        .expect("parse");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].items[0].bbox, Some([1.0, 2.0, 3.0, 4.0]));
        assert!(p[0].items[0].group.accepts("tops"));
        assert!(!p[0].items[0].group.accepts("bottoms"));
        assert_eq!(p[1].kind, Kind::Garment);
        let bad = "[[photo]]\nfile='a'\nsource='x'\nlicence='y'\nclothing=true\n[[photo.item]]\nregion='top'\ngroup='shirts'\n";
        assert!(parse(bad).is_err());
        let bad = "[[photo]]\nfile='a'\nsource='x'\nlicence='y'\nclothing=true\n[[photo.item]]\nregion='top'\ngroup='tops'\ncategory='tshirt'\n";
        assert!(parse(bad).is_err());
    }
}
