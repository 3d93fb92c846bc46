//! Configuration errors: each names the file, the line and the field, and says what is allowed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax { file: PathBuf, line: usize, column: usize, message: String },
    #[error("{file}:{line}: {field}: {message}")]
    Invalid { file: PathBuf, line: usize, field: String, message: String },
}

impl ConfigError {
    /// The field path of a semantic error (for tests and scripts).
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// A semantic error before the file and line are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Top-level array and index the field is under (for the line number), e.g. ("pods", 2).
    pub section: Option<(&'static str, usize)>,
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        section: Option<(&'static str, usize)>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> FieldError {
        FieldError { section, field: field.into(), message: message.into() }
    }
}

/// 1-based line of the `index`-th `[[section]]` header in `text`, or of `[section]`.
pub fn locate(text: &str, section: Option<(&str, usize)>) -> usize {
    let Some((name, index)) = section else { return 1 };
    let array = format!("[[{name}]]");
    let table = format!("[{name}]");
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l == array {
            if seen == index {
                return i + 1;
            }
            seen += 1;
        } else if l == table {
            return i + 1;
        }
    }
    1
}

/// Line and column (1-based) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_sections() {
        let t = "[node]\nname='x'\n\n[[pods]]\nname='a'\n[[pods]]\nname='b'\n";
        assert_eq!(locate(t, Some(("pods", 1))), 6);
        assert_eq!(locate(t, Some(("pods", 0))), 4);
        assert_eq!(locate(t, Some(("node", 0))), 1);
        assert_eq!(line_col(t, 9), (2, 3));
    }
}
