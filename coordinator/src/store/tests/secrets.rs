//! Secret cases, with job outputs: stored ciphertext, listing without values, deletion
//! with the repository, and outputs kept on completion. Encryption itself is not tested here.

use super::*;

pub async fn secrets_and_outputs(ctx: Ctx) {
    let s = &*ctx.store;
    let a = s.create_repo(new_repo("a")).await.unwrap();
    let b = s.create_repo(new_repo("b")).await.unwrap();
    let sealed = |n: u8| StoredSecret {
        key_id: "k1".into(),
        nonce: vec![n; 12],
        ciphertext: vec![n, 0, 255, 7],
    };
    assert!(s.set_secret(a.id, "TOKEN", &sealed(1), 10).await.unwrap());
    assert!(!s.set_secret(a.id, "TOKEN", &sealed(2), 11).await.unwrap());
    assert!(s.set_secret(a.id, "DB", &sealed(3), 12).await.unwrap());
    assert_eq!(s.get_secret(a.id, "TOKEN").await.unwrap(), Some(sealed(2)));
    assert_eq!(s.get_secret(b.id, "TOKEN").await.unwrap(), None);
    let list = s.list_secrets(a.id).await.unwrap();
    let names: Vec<_> = list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["DB", "TOKEN"]);
    assert_eq!((list[1].created_at, list[1].updated_at), (10, 11));
    assert!(s.delete_secret(a.id, "DB").await.unwrap());
    assert!(!s.delete_secret(a.id, "DB").await.unwrap());
    assert!(matches!(
        s.set_secret(9999, "X", &sealed(1), 1).await,
        Err(StoreError::Conflict(_)) | Err(StoreError::NotFound)
    ));

    // A completed job keeps what it produced.
    s.create_run(push_run(a.id, "main", vec![job(0, "build", &[])]), 20)
        .await
        .unwrap();
    let c = s.claim_job(1, 21, LEASE).await.unwrap().unwrap();
    let mut done = passed();
    done.outputs = Some(r#"{"image":{"id":"sha256:abc"}}"#.into());
    s.complete_job(c.job.id, 1, done, 22).await.unwrap();
    let j = s.get_job(c.job.id).await.unwrap();
    assert_eq!(j.outputs.unwrap()["image"]["id"], "sha256:abc");
    // Deleting the repository deletes its secrets.
    s.delete_repo(a.id).await.unwrap();
    assert_eq!(s.get_secret(a.id, "TOKEN").await.unwrap(), None);
}
