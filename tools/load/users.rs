//! The users file: one `address password` per line.

use std::path::Path;

/// One account the load tool logs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name and mail address.
    pub address: String,
    /// Clear-text password.
    pub password: String,
}

/// Why a users file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("cannot read users file {path}: {source}")]
    Read {
        /// The file named on the command line.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line has an address but no password.
    #[error("users file line {line}: expected `address password`")]
    MissingPassword {
        /// 1-based line number.
        line: usize,
    },
    /// The file holds no users.
    #[error("users file has no users")]
    Empty,
}

/// Parses users text. Blank lines and lines starting with `#` are skipped; the password is
/// the rest of the line after the first run of whitespace (so it may contain spaces).
pub fn parse_users(text: &str) -> Result<Vec<User>, UsersError> {
    let mut users = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((address, password)) = line.split_once(|c: char| c.is_whitespace()) else {
            return Err(UsersError::MissingPassword { line: i + 1 });
        };
        let password = password.trim_start();
        if password.is_empty() {
            return Err(UsersError::MissingPassword { line: i + 1 });
        }
        users.push(User {
            address: address.to_string(),
            password: password.to_string(),
        });
    }
    if users.is_empty() {
        return Err(UsersError::Empty);
    }
    Ok(users)
}

/// Reads and parses a users file.
pub fn load_users(path: &Path) -> Result<Vec<User>, UsersError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_users(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_spaces() {
        let users = parse_users(
            "# test users\n\nalice@example.org s3cret\r\nbob@example.org  two words \n",
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].address, "alice@example.org");
        assert_eq!(users[0].password, "s3cret");
        assert_eq!(users[1].password, "two words");
    }

    #[test]
    fn rejects_missing_password_with_line_number() {
        let err = parse_users("a@b pw\nlonely@example.org\n").unwrap_err();
        assert!(matches!(err, UsersError::MissingPassword { line: 2 }));
        assert!(matches!(
            parse_users("x@y   \n"),
            Err(UsersError::MissingPassword { line: 1 })
        ));
    }

    #[test]
    fn rejects_empty_file() {
        assert!(matches!(
            parse_users("# only a comment\n"),
            Err(UsersError::Empty)
        ));
    }
}
