//! Identifiers for patients and devices.
//!
//! Ids travel in MQTT topics, URLs and file names, so they are restricted to a
//! conservative character set that needs no escaping anywhere.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    #[error("id contains {0:?}; use only letters, digits, '-', '_' and '.'")]
    BadChar(char),
}

fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar(c));
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    PatientId,
    "Identifier of a patient, unique within one medmesh installation."
);
id_type!(
    DeviceId,
    "Identifier of a device, as it appears in its MQTT topic."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_topic_safe_ids() {
        assert!(DeviceId::new("ward-a_bed.01").is_ok());
    }

    #[test]
    fn rejects_characters_that_would_break_topics_or_urls() {
        assert_eq!(DeviceId::new("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(DeviceId::new("a+"), Err(IdError::BadChar('+')));
        assert_eq!(PatientId::new(""), Err(IdError::Empty));
        assert_eq!(PatientId::new("x".repeat(65)), Err(IdError::TooLong));
    }
}
