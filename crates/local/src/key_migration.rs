//! Moves manuals stored by earlier versions under the user id (`manuals/<user_id>/…`) to the
//! pseudonymous layout of [`manuel_core::storage_keys`], once, at start-up, so that no link
//! to an existing manual names its owner either.
//!
//! Each manual moves on its own and the step can be cut anywhere: the file is renamed first,
//! then the record points at it. A start after a cut finds the record still on the old key and
//! the file already moved, and only updates the record. A manual still waiting for the bytes of
//! its upload link keeps its key (the link is signed over it). Pages drawn under the old layout
//! are a cache: they stay until their manual is deleted or its owner erased (both remove
//! either layout).

use manuel_core::PortError;
use manuel_core::domain::ManualStatus;
use manuel_core::storage_keys;

use crate::objects::FileObjectStore;
use crate::store::SqliteStore;

/// Moves every manual still stored under its owner's id; returns how many moved.
pub fn move_to_pseudonymous_keys(
    store: &SqliteStore,
    objects: &FileObjectStore,
) -> Result<usize, PortError> {
    let mut moved = 0;
    for manual in store.all_manuals()? {
        let Some((owner, _)) = storage_keys::manual_key_parts(&manual.key) else {
            continue;
        };
        if owner != manual.user_id.as_str() || manual.status == ManualStatus::Uploading {
            continue;
        }
        let key = storage_keys::manual_key(&manual.user_id, &manual.id, manual.kind);
        let (from, to) = (objects.path_for(&manual.key)?, objects.path_for(&key)?);
        if from.exists() {
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(PortError::failed)?;
            }
            std::fs::rename(&from, &to).map_err(PortError::failed)?;
        }
        store.set_key(&manual.user_id, &manual.id, &key)?;
        moved += 1;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::LinkSigner;
    use manuel_core::domain::{DocumentKind, Manual, UserId};
    use manuel_core::ports::{InsertOutcome, ManualRepository, ObjectStore};

    fn manual(user: &UserId, id: &str, key: String, status: ManualStatus) -> Manual {
        let now = chrono::Utc::now();
        Manual {
            id: id.to_owned(),
            user_id: user.clone(),
            name: format!("{id}.pdf"),
            key,
            kind: DocumentKind::Pdf,
            size_bytes: 3,
            sha256: format!("{id:0>64}"),
            status,
            status_reason: None,
            pages: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn manuals_under_the_user_id_move_once_and_keep_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let objects = FileObjectStore::new(
            dir.path().join("objects"),
            LinkSigner::new(vec![7; 32], "http://127.0.0.1:1"),
        );
        let alice = UserId::parse("alice").unwrap();
        let stored = manual(
            &alice,
            "m1",
            "manuals/alice/m1.pdf".to_owned(),
            ManualStatus::Ready,
        );
        let cut = manual(
            &alice,
            "m2",
            "manuals/alice/m2.pdf".to_owned(),
            ManualStatus::Ready,
        );
        let waiting = manual(
            &alice,
            "m3",
            "manuals/alice/m3.pdf".to_owned(),
            ManualStatus::Uploading,
        );
        for manual in [&stored, &cut, &waiting] {
            assert!(matches!(
                store.insert(manual).await.unwrap(),
                InsertOutcome::Inserted
            ));
        }
        objects
            .put(&stored.key, "pdf".into(), "application/pdf")
            .await
            .unwrap();
        // m2 was cut after its file moved, before its record did.
        let m2_key = storage_keys::manual_key(&alice, "m2", DocumentKind::Pdf);
        objects
            .put(&m2_key, "pdf".into(), "application/pdf")
            .await
            .unwrap();

        assert_eq!(move_to_pseudonymous_keys(&store, &objects).unwrap(), 2);
        for id in ["m1", "m2"] {
            let now = store.get(&alice, id).await.unwrap().unwrap();
            assert!(!now.key.contains("alice"), "{}", now.key);
            assert_eq!(
                objects.get(&now.key).await.unwrap().as_deref(),
                Some(&b"pdf"[..])
            );
        }
        assert!(objects.get(&stored.key).await.unwrap().is_none());
        let still = store.get(&alice, "m3").await.unwrap().unwrap();
        assert_eq!(still.key, "manuals/alice/m3.pdf");

        assert_eq!(move_to_pseudonymous_keys(&store, &objects).unwrap(), 0);
    }
}
