//! Passwords and names: the rules, as plain functions over values (the
//! database work is in `accounts`).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use hone_app::api::AppError;

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// A sign-in name longer than this is refused before anything is stored.
pub const MAX_USERNAME_BYTES: usize = 100;

/// Hashes with argon2id (the crate's default parameters: 19 MiB, t=2).
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| {
            tracing::error!(error = %e, "hashing a password failed");
            AppError::Internal
        })
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so that a
/// wrong name costs as much time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password, never matches").unwrap_or_default())
}

/// A username: 3–40 characters, letters, digits, `.`, `_`, `-`; stored
/// in lower case so `Alice` and `alice` are one account.
pub fn parse_username(raw: &str, field: &str) -> Result<String, AppError> {
    let name = raw.trim().to_lowercase();
    let len = name.chars().count();
    if !(3..=40).contains(&len) {
        return Err(AppError::invalid(
            field,
            "A username has 3 to 40 characters.",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(AppError::invalid(
            field,
            "Use only letters, digits, dots, dashes and underscores in a username.",
        ));
    }
    Ok(name)
}

pub fn check_new_password(password: &str, field: &str) -> Result<(), AppError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::invalid(
            field,
            format!("A password needs at least {MIN_PASSWORD_CHARS} characters."),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::invalid(
            field,
            "That password is too long (1024 bytes at most).",
        ));
    }
    Ok(())
}

/// A team or project name: 1–100 characters after trimming, no control characters.
pub fn parse_name(raw: &str, field: &str, what: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid(
            field,
            format!("A {what} name has 1 to 100 characters."),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            format!("A {what} name cannot contain control characters."),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn usernames_are_normalised_and_checked() {
        assert_eq!(parse_username("  Alice.B ", "u").unwrap(), "alice.b");
        assert_eq!(
            parse_username("al", "u")
                .unwrap_err()
                .for_field("u")
                .unwrap(),
            "A username has 3 to 40 characters."
        );
        assert!(parse_username("robert'); drop table users;--", "u").is_err());
        assert!(parse_username("<script>", "u").is_err());
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_new_password("short", "p").is_err());
        assert!(check_new_password("twelve chars", "p").is_ok());
    }
}
