//! `next_token`s as clients see them: the store's cursor, sealed to the user it was issued to.
//!
//! A store's cursor says where a listing stopped (a sort key, an id). Handed out as is, a client
//! could alter it or decode it; sealed, it is `<cursor>.<tag>` with the tag an HMAC-SHA256 over
//! the user id and the cursor, keyed with the deployment's signing key when it has one. A token
//! altered, cut, or issued to another user does not open: the listing answers 400. Stores keep
//! their own ownership check as well; this is the outer one, and it keeps stores' cursors
//! opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::UserId;

/// The key used when a deployment has no signing key: the token is still bound to its user and
/// to its cursor (any change is refused), though not secret from someone who knows both.
const UNKEYED: &[u8] = b"manuel next_token v1";
const TAG_BYTES: usize = 16;

fn mac(key: Option<&[u8]>, user: &UserId, cursor: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.unwrap_or(UNKEYED))
        .unwrap_or_else(|_| unreachable!());
    mac.update(user.as_str().as_bytes());
    mac.update(b"\n");
    mac.update(cursor.as_bytes());
    mac
}

/// The token a client is given for `cursor`, a store's cursor of `user`'s listing.
pub fn seal(key: Option<&[u8]>, user: &UserId, cursor: &str) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(cursor),
        URL_SAFE_NO_PAD.encode(&mac(key, user, cursor).finalize().into_bytes()[..TAG_BYTES])
    )
}

/// The store's cursor inside `token`, if it was sealed for `user` with this key and not changed.
pub fn open(key: Option<&[u8]>, user: &UserId, token: &str) -> Option<String> {
    let (cursor, tag_text) = token.split_once('.')?;
    let cursor = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let given = URL_SAFE_NO_PAD.decode(tag_text).ok()?;
    if given.len() != TAG_BYTES {
        return None;
    }
    // Constant-time comparison of the truncated tag.
    mac(key, user, &cursor).verify_truncated_left(&given).ok()?;
    Some(cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn a_token_opens_for_its_user_only_and_not_once_changed() {
        let key = Some(&b"a-deployment-signing-key-of-32-bytes"[..]);
        let alice = user("alice");
        let token = seal(key, &alice, "2026-12-06T10:00:00Z#m-1");
        assert_eq!(
            open(key, &alice, &token).as_deref(),
            Some("2026-12-06T10:00:00Z#m-1")
        );
        assert_eq!(
            open(key, &user("bob"), &token),
            None,
            "another user's token"
        );
        assert_eq!(open(Some(b"another key"), &alice, &token), None);
        assert_eq!(
            open(None, &alice, &token),
            None,
            "sealed with a key, opened without"
        );

        let (cursor, tag) = token.split_once('.').unwrap_or_else(|| unreachable!());
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode("2000-01-01T00:00:00Z#m-0")
        );
        assert_eq!(open(key, &alice, &forged), None, "a changed cursor");
        assert_eq!(
            open(key, &alice, &format!("{cursor}.{}", &tag[..4])),
            None,
            "a cut tag"
        );
        for garbage in ["", ".", "abc", "abc.", ".abc", "%%%.%%%"] {
            assert_eq!(open(key, &alice, garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn without_a_key_a_token_is_still_bound_to_its_user_and_cursor() {
        let alice = user("alice");
        let token = seal(None, &alice, "cursor");
        assert_eq!(open(None, &alice, &token).as_deref(), Some("cursor"));
        assert_eq!(open(None, &user("bob"), &token), None);
    }

    #[test]
    fn the_token_does_not_name_the_user() {
        let token = seal(None, &user("alice-3f1c"), "cursor");
        let decoded: Vec<Vec<u8>> = token
            .split('.')
            .filter_map(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .collect();
        assert!(
            decoded
                .iter()
                .all(|part| !String::from_utf8_lossy(part).contains("alice"))
        );
    }
}
