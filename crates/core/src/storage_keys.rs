//! Where a user's files live in object storage. Keys are seen by clients (an upload's `key`,
//! signed download and page-image links), so they name the owner by a pseudonym — the user
//! id's hash ([`user_hash`]), the one logs and quota counters use — never by the user id:
//!
//! - a manual: `manuals/<owner>/<manual_id>.<ext>`;
//! - its rendered pages (`POST /api/pdf-page`): `pages/<owner>/<manual_id>/…`.
//!
//! Earlier versions stored both under the user id itself (`manuals/<user_id>/…`). Objects stored then
//! keep their keys (every manual's record holds its own), so the old layout is still
//! understood wherever a key is read: a key naming the caller either way is the caller's, and
//! deleting a manual or erasing a user removes rendered pages under both prefixes.

use crate::domain::{DocumentKind, UserId};
use crate::telemetry::user_hash;

/// The top-level prefix of manual files (the one S3 notifies process-manual about).
pub const MANUALS: &str = "manuals/";
const PAGES: &str = "pages/";

/// Where `user`'s manual files are: `manuals/<owner>/`.
pub fn manuals_prefix(user: &UserId) -> String {
    format!("{MANUALS}{}/", user_hash(user))
}

/// Where the pages drawn from `user`'s manuals are: `pages/<owner>/`.
pub fn pages_prefix(user: &UserId) -> String {
    format!("{PAGES}{}/", user_hash(user))
}

/// The key of a new manual's file.
pub fn manual_key(user: &UserId, manual_id: &str, kind: DocumentKind) -> String {
    format!("{}{manual_id}.{}", manuals_prefix(user), kind.extension())
}

/// Whether `segment` (the second part of a key) names `user`: their pseudonym, or, in keys
/// of the earlier layout, their id.
pub fn names_owner(segment: &str, user: &UserId) -> bool {
    segment == user_hash(user) || segment == user.as_str()
}

/// Whether `segment` has the shape of an owner pseudonym (16 lowercase hex digits) rather
/// than of a user id of the earlier layout.
pub fn is_pseudonym(segment: &str) -> bool {
    segment.len() == 16
        && segment
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The parts of a manual's key: the owner segment and the file name (`<manual_id>.<ext>`).
pub fn manual_key_parts(key: &str) -> Option<(&str, &str)> {
    let (owner, file) = key.strip_prefix(MANUALS)?.split_once('/')?;
    (!owner.is_empty() && !file.is_empty() && !file.contains('/')).then_some((owner, file))
}

/// Where the rendered pages of `user`'s manual are cached; the current layout.
pub fn rendered_pages_prefix(user: &UserId, manual_id: &str) -> String {
    format!("{}{manual_id}/", pages_prefix(user))
}

/// Every prefix rendered pages of `user`'s (of one manual when `manual_id` is given) may be
/// under: the current layout and the earlier one.
pub fn all_rendered_pages_prefixes(user: &UserId, manual_id: Option<&str>) -> [String; 2] {
    let under = |owner: &str| match manual_id {
        Some(manual_id) => format!("{PAGES}{owner}/{manual_id}/"),
        None => format!("{PAGES}{owner}/"),
    };
    [under(&user_hash(user)), under(user.as_str())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::parse("alice-1234").unwrap()
    }

    #[test]
    fn keys_name_the_owner_by_pseudonym_only() {
        let key = manual_key(&alice(), "m1", DocumentKind::Pdf);
        assert!(!key.contains("alice"), "{key}");
        assert_eq!(key, format!("manuals/{}/m1.pdf", user_hash(&alice())));
        assert!(!rendered_pages_prefix(&alice(), "m1").contains("alice"));
        let (owner, file) = manual_key_parts(&key).unwrap();
        assert!(names_owner(owner, &alice()));
        assert!(is_pseudonym(owner));
        assert_eq!(file, "m1.pdf");
    }

    #[test]
    fn keys_of_the_old_layout_still_name_their_owner() {
        let (owner, _) = manual_key_parts("manuals/alice-1234/m1.pdf").unwrap();
        assert!(names_owner(owner, &alice()));
        assert!(!names_owner(owner, &UserId::parse("bob").unwrap()));
        assert!(!is_pseudonym(owner));
        assert!(!is_pseudonym("7d8f2a10-1c2b-4e5f-9a8b-0c1d2e3f4a5b"));
        assert_eq!(
            all_rendered_pages_prefixes(&alice(), Some("m1"))[1],
            "pages/alice-1234/m1/"
        );
    }

    #[test]
    fn other_keys_are_not_manual_keys() {
        assert_eq!(manual_key_parts("pages/x/m1/1.png"), None);
        assert_eq!(manual_key_parts("manuals/m1.pdf"), None);
        assert_eq!(manual_key_parts("manuals/a/b/c.pdf"), None);
        assert_eq!(manual_key_parts("manuals//c.pdf"), None);
    }
}
