use std::fmt;

/// Why a tenant name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant name must be 1 to 64 bytes, got {0}")]
    Length(usize),
    #[error("tenant name {0:?} may only contain a-z, 0-9, '_' and '-'")]
    Character(String),
}

/// A validated tenant name: 1 to 64 of `[a-z0-9_-]`. It is used as a path component in every
/// store, so it can never be `.`, `..`, empty, or contain a separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub const MAX_BYTES: usize = 64;

    pub fn new(name: &str) -> Result<TenantId, TenantError> {
        if name.is_empty() || name.len() > Self::MAX_BYTES {
            return Err(TenantError::Length(name.len()));
        }
        let ok = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(TenantError::Character(name.to_string()));
        }
        Ok(TenantId(name.to_string()))
    }

    /// The tenant everything belongs to when authentication is off.
    pub fn default_tenant() -> TenantId {
        TenantId("default".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_path_safe_names_only() {
        for ok in ["a", "acme", "team-1", "x_y", &"a".repeat(64)] {
            assert!(TenantId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", ".", "a/b", "../etc", "A", "a b", "é", "a.b", &"a".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad}");
        }
    }
}
